# aiotest's container image: the wheel is built in the first stage, and the
# runtime stage is a slim Python with the wheel installed, running as a
# non-root user. Both steps are deploy/image.sh, which the tests also run.
#
#   docker build -t aiotest .
#   docker run --rm -v "$PWD:/mnt/aiotest" aiotest --headless -u 10 -t 1m -H http://target
#
# The aiotestfile (aiotestfile.py, or -f NAME) is read from the directory
# mounted at /mnt/aiotest; options come as flags or AIOTEST_* variables.
# Ports: 5557 (a master's workers), 8089 (web UI, /healthz, /readyz, /metrics).

FROM python:3.11-slim-bookworm AS build
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends build-essential curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH="/root/.cargo/bin:${PATH}"
WORKDIR /src
COPY . .
RUN sh deploy/image.sh wheel /wheels

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
COPY deploy/image.sh /usr/local/share/aiotest/image.sh
RUN sh /usr/local/share/aiotest/image.sh install /wheels && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --home-dir /mnt/aiotest aiotest
USER 10001
WORKDIR /mnt/aiotest
EXPOSE 5557 8089
ENTRYPOINT ["aiotest"]
