//! The `janitor` service binary: everything but its router comes from the shared library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    saga::runtime::service::main(saga::contract::Service::Janitor, janitor::router).await
}
