//! `schema-check --schema PROVIDER.jsii [--schema …] [TERRAFORM_DIR]`: checks a Terraform
//! directory (by default the repository's `terraform/`) against each provider schema given,
//! read from the jsii assembly of a CDK for Terraform provider package, as
//! [`infra::schema`] describes. Prints every problem and exits non-zero if there is one.
//! `.ci/infra` fetches the packages and runs it.

use anyhow::{Context as _, Result, bail};
use infra::schema::{Schema, check};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: schema-check --schema PROVIDER.jsii [--schema PROVIDER.jsii]... [TERRAFORM_DIR]";

fn main() -> Result<ExitCode> {
    let mut schemas = Vec::new();
    let mut dir = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--schema") => schemas.push(PathBuf::from(args.next().context(USAGE)?)),
            Some("-h" | "--help") => {
                writeln!(std::io::stdout(), "{USAGE}")?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(other) if other.starts_with('-') => bail!("unknown option {other}\n{USAGE}"),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => bail!("one Terraform directory at most\n{USAGE}"),
        }
    }
    if schemas.is_empty() {
        bail!("no --schema given\n{USAGE}");
    }
    let dir = dir.unwrap_or_else(infra::terraform_dir);

    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for path in &schemas {
        let schema = Schema::from_jsii_file(path)?;
        let report = check(&schema, &dir)?;
        let against = format!("{} (schema from {})", schema.version, schema.package);
        if report.problems.is_empty() {
            writeln!(
                out,
                "{}: the {} {} blocks match {against}",
                dir.display(),
                report.checked,
                schema.provider
            )?;
        } else {
            failed = true;
            writeln!(
                out,
                "{}: {} problems against {against}:",
                dir.display(),
                report.problems.len()
            )?;
            for problem in &report.problems {
                writeln!(out, "  {problem}")?;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
