//! Checks `terraform/` against the real schema of the Terraform provider it uses, offline:
//! what `terraform validate` would say about resource types, argument and block names, and
//! required arguments, on a machine that cannot download the provider.
//!
//! # Where the schema comes from
//!
//! The CDK for Terraform provider packages are generated from the provider's schema, and
//! ship it in a jsii assembly (`.jsii`, one JSON file) inside an ordinary Python package:
//! `cdktf-cdktf-provider-google` 16.12.1 is hashicorp/google 6.50.0 and
//! `cdktn-provider-google` 21.1.0 is hashicorp/google 8.7.0. `.ci/infra` downloads and
//! unpacks them; [`Schema::from_jsii`] reads the few things the check needs:
//!
//! - A resource, data source or ephemeral resource is a class whose doc summary links its
//!   registry page and names its type: `Represents a {@link
//!   https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/pubsub_topic
//!   google_pubsub_topic}.` (`…/docs google` for the provider itself). The `config` parameter
//!   of its constructor is an interface with one property per argument and nested block.
//! - A property's Terraform name is the anchor of the registry link in its docs (`Docs at
//!   Terraform Registry: {@link …/pubsub_topic#message_storage_policy …}`), not its jsii
//!   name: that is camelCase and sometimes renamed (`buildAttribute` is `build`,
//!   `fetchhDetails` is `geth_details`). A property without the link (a handful in 26,000)
//!   falls back to its name in snake case ([`snake_case`]).
//! - A property without `optional: true` is required.
//! - A property typed as one of the assembly's datatype interfaces is a nested block that
//!   may appear at most once; typed as a list of them (`IResolvable | Interface[]`), a block
//!   that may repeat. Anything else is an argument. Attributes known only after apply are
//!   not in the config interface, so setting one is reported, as Terraform would.
//!
//! # What is checked
//!
//! [`check`] reads the configuration as written, not as evaluated: every block of a
//! `dynamic` block's `content` is checked even when its `for_each` is empty for some
//! instance, and no variable needs a value. For every `resource`, `data` and `ephemeral`
//! block of the provider's types (`google_*`) and its `provider` block: the type exists,
//! every argument and nested block exists and is used as what it is (an argument with `=`, a
//! block with braces), a once-only block appears once, and every required argument and
//! block is set; recursively, inside nested and `dynamic` blocks. A required block counts
//! as set when a `dynamic` block may generate it. Meta-arguments ([`META_ARGUMENTS`]) are
//! Terraform's, not the provider's. Values are not type-checked.
//!
//! # Why Rust, in this crate
//!
//! The crate already parses `terraform/` with hcl-rs for the drift tests, so the check
//! reads the configuration exactly as they do, and its tests run with `cargo test -p infra`
//! like theirs. A Python script would need an HCL parser of its own (python-hcl2) and a
//! second test runner in `.ci/infra`, for a conversion that is as short in either language.
//! The jsii is read with serde into just the fields used here, not a `serde_json::Value` of
//! the whole file: the 130 MB assembly of 8.7.0 takes under two seconds and about 210 MB at
//! peak, most of it the file itself. A block type may contain itself (8.7.0's
//! `google_cloud_security_compliance_cloud_control` does), so the [`Schema`] keeps each block
//! type once and refers to nested ones by [`BlockId`].

use anyhow::{Context as _, Result, bail};
use hcl::{Block, Body, Structure};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

/// The arguments and blocks of a `resource`, `data` or `ephemeral` block that are
/// Terraform's own (its meta-arguments), not the provider's.
pub const META_ARGUMENTS: [&str; 7] = [
    "for_each",
    "count",
    "depends_on",
    "provider",
    "lifecycle",
    "provisioner",
    "connection",
];

/// The arguments of a `provider` block that are Terraform's own.
const PROVIDER_META_ARGUMENTS: [&str; 2] = ["alias", "version"];

/// A provider's schema: what each of its block types accepts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    /// The provider's name, the prefix of its types: `google`.
    pub provider: String,
    /// Its source and version, as the registry names them: `hashicorp/google 6.50.0`.
    pub version: String,
    /// The package the schema was read from: `@cdktf/provider-google 16.12.1`.
    pub package: String,
    /// The `provider` block, if the package describes it.
    pub provider_block: Option<BlockId>,
    /// Resource type => its block.
    pub resources: BTreeMap<String, BlockId>,
    /// Data source type => its block.
    pub data_sources: BTreeMap<String, BlockId>,
    /// Ephemeral resource type => its block.
    pub ephemeral_resources: BTreeMap<String, BlockId>,
    /// Every block, once: a block type may contain itself (8.7.0 has such), so blocks refer
    /// to their nested blocks by [`BlockId`] rather than holding them.
    blocks: Vec<BlockSchema>,
}

/// Which block of a [`Schema`]: see [`Schema::block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockId(usize);

/// What one block accepts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockSchema {
    /// Argument name => whether it is required.
    pub arguments: BTreeMap<String, bool>,
    /// Nested block type => what it is.
    pub blocks: BTreeMap<String, NestedBlock>,
}

/// A nested block type.
#[derive(Clone, Debug, PartialEq)]
pub struct NestedBlock {
    /// Whether the block must appear.
    pub required: bool,
    /// Whether it may appear at most once (the jsii types it as one object, not a list).
    pub max_one: bool,
    /// What it accepts.
    pub block: BlockId,
}

/// The parts of a jsii assembly that the conversion reads; serde skips the rest.
#[derive(Deserialize)]
struct Assembly {
    name: String,
    version: String,
    types: HashMap<String, JsiiType>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct JsiiType {
    kind: String,
    datatype: bool,
    docs: Docs,
    interfaces: Vec<String>,
    properties: Vec<Property>,
    initializer: Option<Initializer>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Docs {
    summary: String,
    remarks: String,
}

#[derive(Deserialize)]
struct Property {
    name: String,
    #[serde(default)]
    optional: bool,
    #[serde(rename = "type")]
    type_ref: TypeRef,
    #[serde(default)]
    docs: Docs,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Initializer {
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(rename = "type")]
    type_ref: TypeRef,
}

/// A jsii type reference: `{"fqn": …}`, `{"collection": {"elementtype": …}}`, `{"union":
/// {"types": […]}}` or `{"primitive": …}` (which needs no field here).
#[derive(Default, Deserialize)]
#[serde(default)]
struct TypeRef {
    fqn: Option<String>,
    collection: Option<Box<Collection>>,
    union: Option<Union>,
}

#[derive(Deserialize)]
struct Collection {
    elementtype: TypeRef,
}

#[derive(Deserialize)]
struct Union {
    types: Vec<TypeRef>,
}

/// What a class's registry link says it is.
enum Kind {
    Provider,
    Resource,
    DataSource,
    Ephemeral,
}

const REGISTRY: &str = "https://registry.terraform.io/providers/";

impl Schema {
    /// Reads a provider schema from a jsii assembly file (see the [module docs](self)).
    pub fn from_jsii_file(path: &Path) -> Result<Self> {
        let json = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_jsii(&json).with_context(|| format!("reading a provider schema from {}", path.display()))
    }

    /// What the block `id` accepts.
    pub fn block(&self, id: BlockId) -> &BlockSchema {
        &self.blocks[id.0]
    }

    /// Reads a provider schema from the text of a jsii assembly.
    pub fn from_jsii(json: &[u8]) -> Result<Self> {
        let assembly: Assembly = serde_json::from_slice(json).context("not a jsii assembly")?;
        let mut schema = Schema {
            package: format!("{} {}", assembly.name, assembly.version),
            ..Schema::default()
        };
        let mut blocks = Converter {
            types: &assembly.types,
            blocks: Vec::new(),
            ids: HashMap::new(),
        };
        for (fqn, class) in &assembly.types {
            if class.kind != "class" {
                continue;
            }
            let Some((kind, source, version, name)) = registry_class(&class.docs.summary) else {
                continue;
            };
            let this = format!("{source} {version}");
            if schema.version.is_empty() {
                schema.version = this;
                source
                    .rsplit('/')
                    .next()
                    .unwrap_or(source)
                    .clone_into(&mut schema.provider);
            } else if schema.version != this {
                bail!("{fqn} is from {this}, other classes from {}", schema.version);
            }
            let config = class
                .initializer
                .iter()
                .flat_map(|init| &init.parameters)
                .find(|p| p.name == "config")
                .and_then(|p| p.type_ref.fqn.as_deref());
            let block = match config {
                Some(config) => blocks
                    .block(config)
                    .with_context(|| format!("the config of {fqn}"))?,
                None => blocks.empty(),
            };
            let (name, table) = match kind {
                Kind::Provider => {
                    schema.provider_block = Some(block);
                    continue;
                }
                Kind::Resource => (name, &mut schema.resources),
                Kind::DataSource => (name, &mut schema.data_sources),
                Kind::Ephemeral => (name, &mut schema.ephemeral_resources),
            };
            table.insert(name.to_owned(), block);
        }
        if schema.resources.is_empty() {
            bail!(
                "{} has no resource classes: not a provider package",
                schema.package
            );
        }
        schema.blocks = blocks.blocks;
        Ok(schema)
    }
}

/// Parses a class summary `Represents a {@link https://registry.terraform.io/providers/
/// hashicorp/google/6.50.0/docs/resources/x google_x}.` into (kind, `hashicorp/google`,
/// `6.50.0`, `google_x`).
fn registry_class(summary: &str) -> Option<(Kind, &str, &str, &str)> {
    let link = summary.strip_prefix("Represents a {@link ")?.strip_suffix("}.")?;
    let (url, name) = link.split_once(' ')?;
    let path = url.strip_prefix(REGISTRY)?;
    let (source, rest) = path
        .match_indices('/')
        .nth(1)
        .map(|(i, _)| (&path[..i], &path[i + 1..]))?;
    let (version, docs) = rest.split_once("/docs")?;
    let kind = match docs.split('/').nth(1) {
        None => Kind::Provider,
        Some("resources") => Kind::Resource,
        Some("data-sources") => Kind::DataSource,
        Some("ephemeral-resources") => Kind::Ephemeral,
        Some(_) => return None,
    };
    Some((kind, source, version, name))
}

/// The blocks read so far, each datatype interface once.
struct Converter<'a> {
    types: &'a HashMap<String, JsiiType>,
    blocks: Vec<BlockSchema>,
    ids: HashMap<&'a str, BlockId>,
}

impl<'a> Converter<'a> {
    /// A block that accepts nothing.
    fn empty(&mut self) -> BlockId {
        self.blocks.push(BlockSchema::default());
        BlockId(self.blocks.len() - 1)
    }

    /// The block that the datatype interface `fqn` describes.
    fn block(&mut self, fqn: &'a str) -> Result<BlockId> {
        if let Some(id) = self.ids.get(fqn) {
            return Ok(*id);
        }
        let types = self.types;
        let interface = types.get(fqn).with_context(|| format!("no type {fqn}"))?;
        // Its id first, so that a block that contains itself finds it.
        let id = self.empty();
        self.ids.insert(fqn, id);
        let mut out = BlockSchema::default();
        // Properties inherited from the assembly's own interfaces too (the generated code
        // has none, but jsii allows them); those of other assemblies are the CDK's
        // meta-arguments.
        let parents = interface.interfaces.iter().filter_map(|parent| types.get(parent));
        for property in std::iter::once(interface)
            .chain(parents)
            .flat_map(|t| &t.properties)
        {
            let name = terraform_name(property);
            match nested(types, &property.type_ref, true) {
                Some((nested, max_one)) => {
                    let block = self.block(nested).with_context(|| format!("block `{name}`"))?;
                    out.blocks.insert(
                        name,
                        NestedBlock {
                            required: !property.optional,
                            max_one,
                            block,
                        },
                    );
                }
                None => {
                    out.arguments.insert(name, !property.optional);
                }
            }
        }
        self.blocks[id.0] = out;
        Ok(id)
    }
}

/// The datatype interface a property's type refers to, if any, and whether it is one object
/// (`single`) rather than a list of them.
fn nested<'a>(
    types: &HashMap<String, JsiiType>,
    type_ref: &'a TypeRef,
    single: bool,
) -> Option<(&'a str, bool)> {
    if let Some(fqn) = &type_ref.fqn {
        return types
            .get(fqn)
            .is_some_and(|t| t.kind == "interface" && t.datatype)
            .then_some((fqn.as_str(), single));
    }
    if let Some(collection) = &type_ref.collection {
        return nested(types, &collection.elementtype, false);
    }
    type_ref
        .union
        .iter()
        .flat_map(|u| &u.types)
        .find_map(|member| nested(types, member, single))
}

/// A property's Terraform name: the anchor of its registry link, else its name in
/// snake case.
fn terraform_name(property: &Property) -> String {
    [&property.docs.remarks, &property.docs.summary]
        .into_iter()
        .find_map(|text| registry_anchor(text))
        .map_or_else(|| snake_case(&property.name), ToOwned::to_owned)
}

/// The anchor in `Docs at Terraform Registry: {@link https://…#anchor Class#anchor}`.
fn registry_anchor(docs: &str) -> Option<&str> {
    let (_, link) = docs.split_once("Docs at Terraform Registry: {@link ")?;
    let (url, _) = link.split_once([' ', '}'])?;
    let (_, anchor) = url.strip_prefix(REGISTRY)?.split_once('#')?;
    (!anchor.is_empty()).then_some(anchor)
}

/// `portRange` => `port_range`: how the CDK names Terraform's arguments, undone.
pub fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// One way in which the configuration does not match the schema.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file, relative to the checked directory.
    pub file: String,
    /// The resource (`google_pubsub_topic.topic`), data source (`data.google_project.this`)
    /// or provider block (`provider.google`).
    pub address: String,
    /// Where in it: block types and the argument, dotted (`template.containers.image`);
    /// empty for the block itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.address)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// How many `resource`, `data`, `ephemeral` and `provider` blocks of the provider were
    /// checked.
    pub checked: usize,
    /// Everything that does not match, in file order.
    pub problems: Vec<Problem>,
}

/// Checks the `*.tf` files of `dir` against `schema` (see the [module docs](self)).
pub fn check(schema: &Schema, dir: &Path) -> Result<Report> {
    let mut report = Report::default();
    let prefix = format!("{}_", schema.provider);
    for (path, body) in crate::parse_dir(dir)? {
        let file = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
        for block in body.blocks() {
            let labels: Vec<&str> = block.labels.iter().map(hcl::BlockLabel::as_str).collect();
            let (address, table, kind, meta) = match (block.identifier.as_str(), labels.as_slice()) {
                ("resource", [kind, name]) => (
                    format!("{kind}.{name}"),
                    &schema.resources,
                    "resource type",
                    &META_ARGUMENTS[..],
                ),
                ("data", [kind, name]) => (
                    format!("data.{kind}.{name}"),
                    &schema.data_sources,
                    "data source",
                    &META_ARGUMENTS[..],
                ),
                ("ephemeral", [kind, name]) => (
                    format!("ephemeral.{kind}.{name}"),
                    &schema.ephemeral_resources,
                    "ephemeral resource type",
                    &META_ARGUMENTS[..],
                ),
                ("provider", [name]) if *name == schema.provider => {
                    let Some(expected) = schema.provider_block else {
                        continue;
                    };
                    report.checked += 1;
                    let address = format!("provider.{name}");
                    let mut checker = Checker {
                        schema,
                        file: &file,
                        address: &address,
                        problems: &mut report.problems,
                    };
                    checker.body(&block.body, expected, "", &PROVIDER_META_ARGUMENTS);
                    continue;
                }
                _ => continue,
            };
            let kind_name = labels[0];
            if !kind_name.starts_with(&prefix) {
                continue;
            }
            report.checked += 1;
            let mut checker = Checker {
                schema,
                file: &file,
                address: &address,
                problems: &mut report.problems,
            };
            match table.get(kind_name) {
                Some(expected) => checker.body(&block.body, *expected, "", meta),
                None => checker.problem(
                    "",
                    format!(
                        "no {kind} `{kind_name}` in {}{}",
                        schema.version,
                        did_you_mean(kind_name, table.keys())
                    ),
                ),
            }
        }
    }
    Ok(report)
}

/// Walks one resource's blocks, collecting problems.
struct Checker<'a> {
    schema: &'a Schema,
    file: &'a str,
    address: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, path: &str, message: String) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            address: self.address.to_owned(),
            path: path.to_owned(),
            message,
        });
    }

    /// Checks a block's body against what it accepts; `at` is the block's own path, `meta`
    /// the names that are Terraform's rather than the provider's at this level.
    fn body(&mut self, body: &Body, expected: BlockId, at: &str, meta: &[&str]) {
        let expected = self.schema.block(expected);
        let mut arguments = BTreeSet::new();
        let mut blocks: BTreeMap<&str, usize> = BTreeMap::new();
        let mut generated = BTreeSet::new();
        for structure in body {
            match structure {
                Structure::Attribute(attribute) => {
                    let name = attribute.key.as_str();
                    let path = join(at, name);
                    if meta.contains(&name) {
                        continue;
                    }
                    if expected.arguments.contains_key(name) {
                        arguments.insert(name);
                    } else if expected.blocks.contains_key(name) {
                        self.problem(
                            &path,
                            format!("`{name}` is a block, not an argument: write `{name} {{ … }}`"),
                        );
                    } else {
                        let hint = did_you_mean(name, expected.arguments.keys());
                        self.problem(&path, format!("no argument `{name}`{hint}"));
                    }
                }
                Structure::Block(block) if block.identifier.as_str() == "dynamic" => {
                    if let Some(name) = self.dynamic(block, expected, at) {
                        generated.insert(name);
                    }
                }
                Structure::Block(block) => {
                    let name = block.identifier.as_str();
                    let path = join(at, name);
                    if meta.contains(&name) {
                        continue;
                    }
                    if let Some(nested) = expected.blocks.get(name) {
                        *blocks.entry(name).or_default() += 1;
                        self.body(&block.body, nested.block, &path, &[]);
                    } else if expected.arguments.contains_key(name) {
                        self.problem(
                            &path,
                            format!("`{name}` is an argument, not a block: write `{name} = …`"),
                        );
                    } else {
                        let hint = did_you_mean(name, expected.blocks.keys());
                        self.problem(&path, format!("no block type `{name}`{hint}"));
                    }
                }
            }
        }
        for (name, count) in &blocks {
            if *count > 1 && expected.blocks[*name].max_one {
                self.problem(
                    &join(at, name),
                    format!("at most one `{name}` block is allowed, found {count}"),
                );
            }
        }
        for (name, _) in expected.arguments.iter().filter(|(_, required)| **required) {
            if !arguments.contains(name.as_str()) {
                self.problem(
                    &join(at, name),
                    format!("the required argument `{name}` is not set"),
                );
            }
        }
        for (name, _) in expected.blocks.iter().filter(|(_, nested)| nested.required) {
            if !blocks.contains_key(name.as_str()) && !generated.contains(name.as_str()) {
                self.problem(&join(at, name), format!("the required block `{name}` is missing"));
            }
        }
    }

    /// Checks `dynamic "name" { for_each = …, content { … } }`: that `name` is a block here,
    /// and its `content` as that block. Returns the block type it generates.
    fn dynamic<'b>(&mut self, block: &'b Block, expected: &BlockSchema, at: &str) -> Option<&'b str> {
        let [label] = block.labels.as_slice() else {
            self.problem(
                at,
                "a dynamic block takes one label: the block type it generates".to_owned(),
            );
            return None;
        };
        let name = label.as_str();
        let path = join(at, name);
        for attribute in block.body.attributes() {
            let key = attribute.key.as_str();
            if !["for_each", "iterator", "labels"].contains(&key) {
                self.problem(
                    &path,
                    format!("dynamic block: no argument `{key}`: its arguments go in `content`"),
                );
            }
        }
        if !block.body.attributes().any(|a| a.key.as_str() == "for_each") {
            self.problem(&path, "dynamic block: `for_each` is not set".to_owned());
        }
        let contents: Vec<&Block> = block.body.blocks().collect();
        let content = match contents.as_slice() {
            [content] if content.identifier.as_str() == "content" => content,
            _ => {
                self.problem(
                    &path,
                    "dynamic block: it takes one `content` block and nothing else".to_owned(),
                );
                return None;
            }
        };
        if let Some(nested) = expected.blocks.get(name) {
            self.body(&content.body, nested.block, &path, &[]);
            Some(name)
        } else if expected.arguments.contains_key(name) {
            self.problem(
                &path,
                format!("`{name}` is an argument: a dynamic block can only generate blocks"),
            );
            None
        } else {
            let hint = did_you_mean(name, expected.blocks.keys());
            self.problem(&path, format!("dynamic block: no block type `{name}`{hint}"));
            None
        }
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

/// ` (did you mean `x`?)` for the closest of `candidates` within two edits, else nothing.
fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_property_is_named_by_its_registry_anchor_else_by_its_name_in_snake_case() {
        let property = |name: &str, remarks: &str| Property {
            name: name.to_owned(),
            optional: true,
            type_ref: TypeRef::default(),
            docs: Docs {
                summary: "build block.".to_owned(),
                remarks: remarks.to_owned(),
            },
        };
        let linked = property(
            "buildAttribute",
            "Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/cloudbuild_trigger#build CloudbuildTrigger#build}",
        );
        assert_eq!(terraform_name(&linked), "build");
        assert_eq!(
            terraform_name(&property("portRange", "Only packets…")),
            "port_range"
        );
    }

    #[test]
    fn class_summaries_name_the_provider_version_kind_and_type() {
        let summary = "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/8.7.0/docs/data-sources/project google_project}.";
        let Some((Kind::DataSource, source, version, name)) = registry_class(summary) else {
            panic!("not read as a data source: {summary}");
        };
        assert_eq!(
            (source, version, name),
            ("hashicorp/google", "8.7.0", "google_project")
        );
        let provider = "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/8.7.0/docs google}.";
        assert!(matches!(
            registry_class(provider),
            Some((Kind::Provider, _, _, "google"))
        ));
        assert!(registry_class("Provider-defined functions of the google provider.").is_none());
    }

    #[test]
    fn near_misses_get_a_suggestion_and_far_ones_do_not() {
        let names = ["service_account".to_owned(), "timeout".to_owned()];
        assert_eq!(
            did_you_mean("service_acount", names.iter()),
            " (did you mean `service_account`?)"
        );
        assert_eq!(did_you_mean("labels", names.iter()), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
