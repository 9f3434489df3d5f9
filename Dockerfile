# Multi-stage build of traitor: a Rust builder, then a small Debian runtime that runs as
# an unprivileged user with its data in a volume.
#
# docker build -t traitor .
# docker run -p 8080:8080 -e TRAITOR_AUTH_TOKEN=change-me -v traitor-data:/data traitor

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/traitor target/release/traitor-worker /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin traitor \
 && mkdir -p /data && chown traitor:traitor /data
# traitor finds traitor-worker next to itself.
COPY --from=build /out/traitor /out/traitor-worker /usr/local/bin/
USER traitor
ENV TRAITOR_DATA_DIR=/data \
    TRAITOR_IP=0.0.0.0 \
    TRAITOR_PORT=8080
VOLUME ["/data"]
EXPOSE 8080
# tini forwards SIGTERM so that traitor shuts down in order.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/traitor"]
