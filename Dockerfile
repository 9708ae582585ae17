# The saga's service images, built from the workspace root.
#
#   docker build --build-arg SERVICE=orders -t orders .   one service (frontend, orders,
#                                                         inventory, payments or janitor)
#   docker build --target all -t saga .                   all five binaries in one image;
#                                                         run one with its path as command,
#                                                         e.g. /usr/local/bin/orders
#
# The five binaries are compiled together in one stage that does not depend on SERVICE, so
# building the five images one after the other (as cloudbuild.yaml does) compiles once.
#checkov:skip=CKV_DOCKER_2:Cloud Run checks health with the startup and liveness probes on /healthz set in terraform/run.tf; the distroless runtime has no shell or curl to run a HEALTHCHECK with.

# Debian 12 (bookworm), as the runtime below: the binaries link against its glibc.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# The dependency graph alone, so that the next stage's dependency layer is rebuilt only when
# a Cargo.toml or Cargo.lock changes, not on every source edit.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p frontend -p orders -p inventory -p payments -p janitor
COPY . .
RUN cargo build --release --locked -p frontend -p orders -p inventory -p payments -p janitor \
 && mkdir -p /app/bin \
 && for service in frontend orders inventory payments janitor; do cp "target/release/${service}" /app/bin/; done

FROM builder AS pick
ARG SERVICE
RUN cp "/app/bin/${SERVICE:?build with --build-arg SERVICE=frontend, orders, inventory, payments or janitor}" /app/service

FROM gcr.io/distroless/cc-debian12:nonroot AS all
COPY --from=builder /app/bin/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080

# The default target: one service. distroless/cc holds glibc, libgcc and CA certificates,
# and nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS service
COPY --from=pick /app/service /usr/local/bin/service
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/service"]
