# Multi-stage build of both binaries; small runtime images, non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gateway --bin worker

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home intake
USER 10001

FROM runtime AS gateway
COPY --from=build /src/target/release/gateway /usr/local/bin/gateway
USER root
RUN mkdir -p /var/lib/intake/spool && chown 10001 /var/lib/intake/spool
USER 10001
EXPOSE 8080 9180
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS worker
COPY --from=build /src/target/release/worker /usr/local/bin/worker
EXPOSE 9181
ENTRYPOINT ["/usr/local/bin/worker"]
