# ecr-mirror-sync container image: `make image` (docker build -t ecr-mirror-sync:dev .).
#
# Two stages: a Rust builder, then a small Debian runtime with the CA certificates, a non-root user and the
# default signature policy. Both stages are Debian 12 (bookworm), so the binary's glibc matches at run time.

# --- build ---
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the versions in Cargo.lock.
RUN cargo build --release --locked --bin ecr-mirror-sync \
 && cp target/release/ecr-mirror-sync /usr/local/bin/ecr-mirror-sync

# --- runtime ---
FROM debian:bookworm-slim
# CA certificates for TLS to upstream registries, ECR, STS and the Kubernetes API.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The same numeric uid/gid as the Helm chart's runAsUser (65532, "nonroot" as in distroless images).
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /usr/local/bin/ecr-mirror-sync /usr/local/bin/ecr-mirror-sync
# The default trust policy; the Helm chart mounts its own (from values) over it.
COPY docker/default-policy.json /etc/containers/policy.json
USER 65532:65532
ENTRYPOINT ["ecr-mirror-sync"]
CMD ["--help"]
