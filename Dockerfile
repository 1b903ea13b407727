# Kindred: one image for every role (webhook worker, scheduler, migrations, admin commands).
#   docker build -t kindred .
#   docker run --rm --env-file .env kindred run
# The entrypoint is the `kindred` console script; the command is its subcommand.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package needs: no tests, no .git, no local databases or secrets (.dockerignore).
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY flows ./flows
COPY nlu ./nlu
COPY data ./data
RUN python -m venv /opt/kindred \
    && /opt/kindred/bin/pip install --upgrade pip \
    && /opt/kindred/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/kindred/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    KINDRED_HTTP_PORT=8080
# A fixed, unprivileged uid: files in volumes keep the same owner across rebuilds.
RUN groupadd --system --gid 10001 kindred \
    && useradd --system --uid 10001 --gid kindred --home-dir /home/kindred --create-home \
       --shell /usr/sbin/nologin kindred
COPY --from=build /opt/kindred /opt/kindred
USER kindred
WORKDIR /home/kindred
# Train and cache the embedded NLU model now, so a worker answers its first message at once
# (and still answers when Rasa is down). The cache lands in ~/.cache/kindred, owned by kindred.
RUN kindred nlu train --lang en
EXPOSE 8080
ENTRYPOINT ["kindred"]
CMD ["run"]
