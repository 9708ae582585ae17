//! Reads the Terraform configuration in `terraform/` as far as `terraform plan` would
//! resolve it before talking to Google Cloud, so that tests can compare the deployment with
//! the saga's contract without the provider registry, credentials or a project.
//!
//! What is evaluated: variables (defaults, or values the caller gives), `locals` (in
//! dependency order), each resource's `for_each`, and resource bodies with `each.key`,
//! `each.value` and `dynamic` blocks expanded. What cannot be known before apply (a
//! service account's email, a service's URL, a data source's attributes) evaluates to a
//! placeholder naming it, `${google_service_account.push.email}` (see [`reference`]), so a
//! test can still check that the right thing is referenced.
//!
//! Only the Terraform functions in [`FUNCTIONS`] are available; an expression that calls
//! another one fails to evaluate, naming it, rather than being silently skipped.

pub mod schema;

use anyhow::{Context as _, Result, anyhow, bail};
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Body, Expression, Map, Structure, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Terraform functions the evaluator provides, as Terraform defines them.
pub const FUNCTIONS: [&str; 5] = ["merge", "flatten", "toset", "coalesce", "trimprefix"];

/// The attributes a resource or data source has once applied, for which the evaluator puts
/// placeholders. Referring to any other attribute of a resource fails to evaluate.
pub const COMPUTED_ATTRIBUTES: [&str; 10] = [
    "id",
    "name",
    "email",
    "member",
    "uri",
    "number",
    "location",
    "project",
    "unique_id",
    "uptime_check_id",
];

/// Resource arguments that are Terraform's own, not the provider's: not part of an
/// instance's evaluated body.
const META_ARGUMENTS: [&str; 5] = ["for_each", "count", "depends_on", "provider", "lifecycle"];

/// The repository's `terraform/` directory.
pub fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../terraform")
}

/// The address of a resource (`google_pubsub_topic.topic`) or of one of its `for_each`
/// instances (`google_pubsub_topic.topic["error"]`).
pub fn address(kind: &str, name: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{kind}.{name}[\"{key}\"]"),
        None => format!("{kind}.{name}"),
    }
}

/// The placeholder that an attribute known only after apply evaluates to, such as
/// `${google_service_account.push.email}` for `reference("google_service_account.push",
/// "email")`.
pub fn reference(address: &str, attribute: &str) -> String {
    format!("${{{address}.{attribute}}}")
}

/// One instance of a resource: its address and its evaluated body, as an object whose
/// nested blocks are arrays of objects (so `template[0].containers[0].env`).
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Where Terraform would put it in the state.
    pub address: String,
    /// The `for_each` key, if the resource has `for_each`.
    pub key: Option<String>,
    /// The arguments and nested blocks.
    pub body: Value,
}

impl Instance {
    /// The value at `path`: attribute names and block indexes separated by dots, such as
    /// `push_config.0.oidc_token.0.audience`.
    pub fn get(&self, path: &str) -> Result<&Value> {
        lookup(&self.body, path).with_context(|| format!("{}: no `{path}`", self.address))
    }

    /// The string at `path`.
    pub fn str(&self, path: &str) -> Result<&str> {
        self.get(path)?
            .as_str()
            .with_context(|| format!("{}: `{path}` is not a string", self.address))
    }

    /// Whether there is anything at `path`.
    pub fn has(&self, path: &str) -> bool {
        lookup(&self.body, path).is_some()
    }
}

/// The value at a dotted `path` in `value` (see [`Instance::get`]).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, step| match value {
        Value::Object(map) => map.get(step),
        Value::Array(items) => items.get(step.parse::<usize>().ok()?),
        _ => None,
    })
}

#[derive(Clone, Debug)]
struct Declared {
    kind: String,
    name: String,
    body: Body,
}

/// A Terraform configuration: one directory's `*.tf` files, read as one module.
#[derive(Clone, Debug)]
pub struct Terraform {
    vars: Map<String, Value>,
    locals: Map<String, Value>,
    /// Locals that could not be evaluated, with why.
    unresolved: BTreeMap<String, String>,
    resources: Vec<Declared>,
    /// Root name (a resource type, or `data`) => the placeholders of its instances.
    placeholders: Map<String, Value>,
}

impl Terraform {
    /// Reads every `*.tf` file in `dir`. `vars` gives values to variables, which those
    /// without a default need.
    pub fn load(dir: &Path, vars: &[(&str, Value)]) -> Result<Self> {
        let mut declared_vars = Map::new();
        let mut locals = Vec::new();
        let mut resources = Vec::new();
        let mut data = Vec::new();
        for (file, body) in parse_dir(dir)? {
            for block in body.into_blocks() {
                let labels: Vec<String> = block.labels.iter().map(|l| l.as_str().to_owned()).collect();
                match (block.identifier.as_str(), labels.as_slice()) {
                    ("variable", [name]) => {
                        declared_vars.insert(name.clone(), variable_value(name, &block.body, vars)?);
                    }
                    ("locals", []) => {
                        locals.extend(block.body.into_attributes().map(|a| (a.key.to_string(), a.expr)));
                    }
                    ("resource", [kind, name]) => resources.push(Declared {
                        kind: kind.clone(),
                        name: name.clone(),
                        body: block.body,
                    }),
                    ("data", [kind, name]) => data.push((kind.clone(), name.clone())),
                    ("terraform" | "provider" | "output" | "module" | "moved" | "import" | "check", _) => {}
                    (other, _) => bail!("{}: unexpected block `{other}`", file.display()),
                }
            }
        }
        if let Some((name, _)) = vars.iter().find(|(name, _)| !declared_vars.contains_key(*name)) {
            bail!("no variable `{name}` is declared");
        }

        let mut data_placeholders = Map::new();
        for (kind, name) in &data {
            let by_name = data_placeholders
                .entry(kind.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_name) = by_name {
                by_name.insert(name.clone(), placeholder(&format!("data.{kind}.{name}")));
            }
        }

        let mut tf = Terraform {
            vars: declared_vars,
            locals: Map::new(),
            unresolved: BTreeMap::new(),
            resources,
            placeholders: Map::from_iter([("data".to_owned(), Value::Object(data_placeholders))]),
        };
        tf.resolve(locals);
        Ok(tf)
    }

    /// Evaluates the locals and the resources' `for_each` until nothing more resolves: a
    /// local may refer to a resource, whose instances may depend on another local.
    fn resolve(&mut self, mut pending: Vec<(String, Expression)>) {
        loop {
            let placeholders = self.resource_placeholders();
            let grew = placeholders != self.placeholders;
            self.placeholders = placeholders;
            let ctx = self.context(&Map::new());
            let before = pending.len();
            let mut errors = BTreeMap::new();
            pending.retain(|(name, expr)| match expr.evaluate(&ctx) {
                Ok(value) => {
                    self.locals.insert(name.clone(), value);
                    false
                }
                Err(e) => {
                    errors.insert(name.clone(), e.to_string());
                    true
                }
            });
            if pending.len() == before && !grew {
                self.unresolved = errors;
                return;
            }
        }
    }

    fn resource_placeholders(&self) -> Map<String, Value> {
        let mut all = self.placeholders.clone();
        let ctx = self.context(&Map::new());
        for declared in &self.resources {
            let value = match declared.body.attributes().find(|a| a.key.as_str() == "for_each") {
                None => placeholder(&address(&declared.kind, &declared.name, None)),
                Some(for_each) => match for_each
                    .expr
                    .evaluate(&ctx)
                    .map_err(anyhow::Error::from)
                    .and_then(each)
                {
                    Ok(items) => Value::Object(
                        items
                            .into_iter()
                            .map(|(key, _)| {
                                let value = placeholder(&address(&declared.kind, &declared.name, Some(&key)));
                                (key, value)
                            })
                            .collect(),
                    ),
                    // Not yet: a local it needs is still pending.
                    Err(_) => continue,
                },
            };
            let by_name = all
                .entry(declared.kind.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_name) = by_name {
                by_name.insert(declared.name.clone(), value);
            }
        }
        all
    }

    /// The evaluation context: variables, locals, placeholders, functions, and `extra`
    /// (`each`, the iterators of dynamic blocks).
    fn context(&self, extra: &Map<String, Value>) -> Context<'static> {
        let mut ctx = Context::new();
        ctx.declare_func(
            "merge",
            FuncDef::builder().variadic_param(ParamType::Any).build(merge),
        );
        ctx.declare_func(
            "flatten",
            FuncDef::builder()
                .param(ParamType::array_of(ParamType::Any))
                .build(flatten),
        );
        ctx.declare_func(
            "toset",
            FuncDef::builder()
                .param(ParamType::array_of(ParamType::Any))
                .build(toset),
        );
        ctx.declare_func(
            "coalesce",
            FuncDef::builder().variadic_param(ParamType::Any).build(coalesce),
        );
        ctx.declare_func(
            "trimprefix",
            FuncDef::builder()
                .param(ParamType::String)
                .param(ParamType::String)
                .build(trimprefix),
        );
        ctx.declare_var("var", Value::Object(self.vars.clone()));
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        for (root, value) in &self.placeholders {
            ctx.declare_var(root.as_str(), value.clone());
        }
        for (name, value) in extra {
            ctx.declare_var(name.as_str(), value.clone());
        }
        ctx
    }

    /// A variable's value.
    pub fn var(&self, name: &str) -> Result<&Value> {
        self.vars
            .get(name)
            .with_context(|| format!("no variable `{name}`"))
    }

    /// A local's value.
    pub fn local(&self, name: &str) -> Result<&Value> {
        if let Some(value) = self.locals.get(name) {
            return Ok(value);
        }
        match self.unresolved.get(name) {
            Some(error) => Err(anyhow!("local `{name}` cannot be evaluated: {error}")),
            None => Err(anyhow!("no local `{name}`")),
        }
    }

    /// The locals that could not be evaluated, with why: each is a construct this evaluator
    /// lacks (most often a function outside [`FUNCTIONS`]), or an error in the configuration.
    pub fn unresolved_locals(&self) -> &BTreeMap<String, String> {
        &self.unresolved
    }

    /// Every instance of every resource of type `kind`, in declaration order.
    pub fn all(&self, kind: &str) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for declared in self.resources.iter().filter(|d| d.kind == kind) {
            out.extend(self.expand(declared)?);
        }
        Ok(out)
    }

    /// The instances of resource `kind.name`, by `for_each` key (a single instance without
    /// `for_each` has the key `""`).
    pub fn instances(&self, kind: &str, name: &str) -> Result<BTreeMap<String, Instance>> {
        let declared = self
            .resources
            .iter()
            .find(|d| d.kind == kind && d.name == name)
            .with_context(|| format!("no resource {}", address(kind, name, None)))?;
        Ok(self
            .expand(declared)?
            .into_iter()
            .map(|i| (i.key.clone().unwrap_or_default(), i))
            .collect())
    }

    /// The single instance of resource `kind.name`, which has no `for_each`.
    pub fn resource(&self, kind: &str, name: &str) -> Result<Instance> {
        let mut instances = self.instances(kind, name)?;
        match (instances.remove(""), instances.is_empty()) {
            (Some(instance), true) => Ok(instance),
            _ => bail!("{} has for_each", address(kind, name, None)),
        }
    }

    fn expand(&self, declared: &Declared) -> Result<Vec<Instance>> {
        let base = address(&declared.kind, &declared.name, None);
        let Some(for_each) = declared.body.attributes().find(|a| a.key.as_str() == "for_each") else {
            let body = self
                .body(&declared.body, &Map::new(), true)
                .with_context(|| format!("evaluating {base}"))?;
            return Ok(vec![Instance {
                address: base,
                key: None,
                body,
            }]);
        };
        let items = for_each
            .expr
            .evaluate(&self.context(&Map::new()))
            .map_err(anyhow::Error::from)
            .and_then(each)
            .with_context(|| format!("evaluating the for_each of {base}"))?;
        items
            .into_iter()
            .map(|(key, value)| {
                let address = address(&declared.kind, &declared.name, Some(&key));
                let scope = Map::from_iter([("each".to_owned(), iteration(&key, value))]);
                let body = self
                    .body(&declared.body, &scope, true)
                    .with_context(|| format!("evaluating {address}"))?;
                Ok(Instance {
                    address,
                    key: Some(key),
                    body,
                })
            })
            .collect()
    }

    /// Evaluates a block body into an object; `scope` adds `each` and dynamic iterators.
    fn body(&self, body: &Body, scope: &Map<String, Value>, top: bool) -> Result<Value> {
        let ctx = self.context(scope);
        let mut out = Map::new();
        for structure in body {
            match structure {
                Structure::Attribute(attr) => {
                    if top && META_ARGUMENTS.contains(&attr.key.as_str()) {
                        continue;
                    }
                    let value = attr
                        .expr
                        .evaluate(&ctx)
                        .with_context(|| format!("argument `{}`", attr.key.as_str()))?;
                    out.insert(attr.key.to_string(), value);
                }
                Structure::Block(block) if block.identifier.as_str() == "dynamic" => {
                    let (label, bodies) = self
                        .dynamic(block, scope)
                        .with_context(|| format!("dynamic block {:?}", block.labels))?;
                    for value in bodies {
                        push_block(&mut out, &label, value);
                    }
                }
                Structure::Block(block) if top && META_ARGUMENTS.contains(&block.identifier.as_str()) => {}
                Structure::Block(block) => {
                    let value = self
                        .body(&block.body, scope, false)
                        .with_context(|| format!("block `{}`", block.identifier.as_str()))?;
                    push_block(&mut out, block.identifier.as_str(), value);
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// Expands a `dynamic "label" { for_each = …, iterator = …, content { … } }` block into
    /// the bodies of the `label` blocks it generates.
    fn dynamic(&self, block: &Block, scope: &Map<String, Value>) -> Result<(String, Vec<Value>)> {
        let [label] = block.labels.as_slice() else {
            bail!("a dynamic block takes one label");
        };
        let label = label.as_str().to_owned();
        let for_each = block
            .body
            .attributes()
            .find(|a| a.key.as_str() == "for_each")
            .context("no for_each")?;
        let iterator = match block.body.attributes().find(|a| a.key.as_str() == "iterator") {
            None => label.clone(),
            Some(attr) => match &attr.expr {
                Expression::Variable(name) => name.as_str().to_owned(),
                other => bail!("iterator must be a name, not {other:?}"),
            },
        };
        let content = block
            .body
            .blocks()
            .find(|b| b.identifier.as_str() == "content")
            .context("no content block")?;
        let items = each(for_each.expr.evaluate(&self.context(scope))?)?;
        let bodies = items
            .into_iter()
            .map(|(key, value)| {
                let mut inner = scope.clone();
                inner.insert(iterator.clone(), iteration(&key, value));
                self.body(&content.body, &inner, false)
            })
            .collect::<Result<_>>()?;
        Ok((label, bodies))
    }
}

/// Every `*.tf` file in `dir`, parsed, in file name order: the files Terraform reads as one
/// module.
pub fn parse_dir(dir: &Path) -> Result<Vec<(PathBuf, Body)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "tf"));
    files.sort();
    if files.is_empty() {
        bail!("no *.tf files in {}", dir.display());
    }
    files
        .into_iter()
        .map(|file| {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let body = hcl::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            Ok((file, body))
        })
        .collect()
}

fn variable_value(name: &str, body: &Body, given: &[(&str, Value)]) -> Result<Value> {
    if let Some((_, value)) = given.iter().find(|(n, _)| *n == name) {
        return Ok(value.clone());
    }
    let default = body
        .attributes()
        .find(|a| a.key.as_str() == "default")
        .with_context(|| format!("variable `{name}` has no default: give it a value"))?;
    default
        .expr
        .evaluate(&Context::new())
        .with_context(|| format!("the default of variable `{name}`"))
}

/// The placeholder object of something known only after apply.
fn placeholder(address: &str) -> Value {
    Value::Object(
        COMPUTED_ATTRIBUTES
            .iter()
            .map(|attr| ((*attr).to_owned(), Value::String(reference(address, attr))))
            .collect(),
    )
}

/// The `each` (or dynamic iterator) object of one iteration.
fn iteration(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([
        ("key".to_owned(), Value::String(key.to_owned())),
        ("value".to_owned(), value),
    ]))
}

fn push_block(out: &mut Map<String, Value>, name: &str, value: Value) {
    let slot = out
        .entry(name.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = slot {
        items.push(value);
    }
}

/// The iterations of a `for_each` value: a map's entries, or a set of strings' elements
/// (each both key and value), as Terraform allows.
fn each(collection: Value) -> Result<Vec<(String, Value)>> {
    match collection {
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok((s.clone(), Value::String(s))),
                other => Err(anyhow!("for_each over a set needs strings, found {other}")),
            })
            .collect(),
        other => Err(anyhow!("for_each needs a map or a set of strings, found {other}")),
    }
}

/// Terraform's `merge`: the objects' attributes, later ones winning; null arguments are
/// skipped.
fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for arg in args.into_values() {
        match arg {
            Value::Object(map) => out.extend(map),
            Value::Null => {}
            other => return Err(format!("merge takes objects, found {other}")),
        }
    }
    Ok(Value::Object(out))
}

/// Terraform's `flatten`: nested lists become one list.
#[expect(clippy::unnecessary_wraps, reason = "the signature of hcl::eval::Func")]
fn flatten(args: FuncArgs) -> Result<Value, String> {
    fn into(out: &mut Vec<Value>, value: Value) {
        match value {
            Value::Array(items) => items.into_iter().for_each(|item| into(out, item)),
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    args.into_values().into_iter().for_each(|arg| into(&mut out, arg));
    Ok(Value::Array(out))
}

/// Terraform's `toset`: the distinct elements, in the order Terraform gives a set of strings
/// (lexical).
#[expect(clippy::unnecessary_wraps, reason = "the signature of hcl::eval::Func")]
fn toset(args: FuncArgs) -> Result<Value, String> {
    let mut items: Vec<Value> = args
        .into_values()
        .into_iter()
        .flat_map(|arg| match arg {
            Value::Array(items) => items,
            other => vec![other],
        })
        .collect();
    items.sort_by_key(ToString::to_string);
    items.dedup();
    Ok(Value::Array(items))
}

/// Terraform's `coalesce`: the first argument that is neither null nor an empty string.
fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.into_values()
        .into_iter()
        .find(|arg| !matches!(arg, Value::Null) && arg.as_str() != Some(""))
        .ok_or_else(|| "coalesce: no non-null, non-empty-string arguments".to_owned())
}

/// Terraform's `trimprefix`: the string without the prefix, if it starts with it. Of a
/// placeholder for a value known only once applied (`${...}`), a placeholder of the call,
/// so that a test can tell a trimmed value from an untrimmed one.
fn trimprefix(args: FuncArgs) -> Result<Value, String> {
    let [text, prefix] = args
        .into_values()
        .try_into()
        .map_err(|_| "trimprefix takes two strings")?;
    let (Value::String(text), Value::String(prefix)) = (text, prefix) else {
        return Err("trimprefix takes two strings".to_owned());
    };
    if let Some(reference) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        return Ok(Value::String(format!("${{trimprefix({reference}, {prefix:?})}}")));
    }
    Ok(Value::String(
        text.strip_prefix(&prefix).map_or(text.clone(), str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimprefix_takes_the_prefix_off_when_it_is_there() {
        let local = |args: &str| {
            let text = format!("locals {{ v = trimprefix({args}) }}");
            load(&[("t.tf", text.as_str())], &[]).unwrap().local("v").cloned()
        };
        assert_eq!(
            local(r#""https://a.run.app", "https://""#).unwrap(),
            Value::from("a.run.app")
        );
        assert_eq!(
            local(r#""a.run.app", "https://""#).unwrap(),
            Value::from("a.run.app")
        );
        assert_eq!(local(r#""", "x""#).unwrap(), Value::from(""));
        assert_eq!(
            local(r#""$${x.y.uri}", "https://""#).unwrap(),
            Value::from(r#"${trimprefix(x.y.uri, "https://")}"#),
            "a value known only once applied"
        );
    }

    #[test]
    fn coalesce_takes_the_first_argument_that_is_neither_null_nor_empty() {
        let local = |args: &str| {
            let text = format!("locals {{ v = coalesce({args}) }}");
            load(&[("c.tf", text.as_str())], &[]).unwrap().local("v").cloned()
        };
        assert_eq!(local(r#"null, "", "b", "c""#).unwrap(), Value::from("b"));
        assert_eq!(local(r#""a", null"#).unwrap(), Value::from("a"));
        assert_eq!(local("null, 3").unwrap(), Value::from(3));
        assert!(local(r#"null, """#).is_err(), "nothing to take is an error");
    }

    fn load(files: &[(&str, &str)], vars: &[(&str, Value)]) -> Result<Terraform> {
        let dir = std::env::temp_dir().join(format!(
            "infra-test-{}-{}",
            std::process::id(),
            files.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("-")
        ));
        std::fs::create_dir_all(&dir)?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        let tf = Terraform::load(&dir, vars);
        std::fs::remove_dir_all(&dir)?;
        tf
    }

    #[test]
    fn locals_resolve_in_any_order_across_files_and_through_resources() {
        let tf = load(
            &[
                (
                    "a.tf",
                    r#"
                    locals { names = toset([for k, v in local.things : k if v.on]) }
                    resource "x_thing" "t" {
                      for_each = local.names
                      label    = "${var.prefix}-${each.key}"
                    }
                    locals { emails = { for k, t in x_thing.t : k => t.email } }
                    "#,
                ),
                (
                    "b.tf",
                    r#"
                    variable "prefix" { default = "p" }
                    locals { things = merge({ a = { on = true } }, { b = { on = false }, c = { on = true } }) }
                    "#,
                ),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(tf.local("names").unwrap(), &Value::from(vec!["a", "c"]));
        let emails = tf.local("emails").unwrap();
        assert_eq!(
            lookup(emails, "c").and_then(Value::as_str),
            Some(r#"${x_thing.t["c"].email}"#)
        );
        let instances = tf.instances("x_thing", "t").unwrap();
        assert_eq!(instances["a"].str("label").unwrap(), "p-a");
        assert_eq!(instances.len(), 2);
    }

    #[test]
    fn dynamic_blocks_expand_and_meta_arguments_are_left_out() {
        let tf = load(
            &[(
                "main.tf",
                r#"
                variable "project" {}
                resource "x_service" "s" {
                  depends_on = [x_other.o]
                  template {
                    dynamic "env" {
                      for_each = { A = var.project, B = "b" }
                      content {
                        name  = env.key
                        value = env.value
                      }
                    }
                    dynamic "port" {
                      for_each = []
                      iterator = p
                      content { number = p.value }
                    }
                  }
                }
                resource "x_other" "o" {}
                "#,
            )],
            &[("project", Value::from("proj"))],
        )
        .unwrap();
        let s = tf.resource("x_service", "s").unwrap();
        assert_eq!(s.str("template.0.env.1.name").unwrap(), "B");
        assert_eq!(s.str("template.0.env.0.value").unwrap(), "proj");
        assert!(!s.has("template.0.port"));
        assert!(!s.has("depends_on"));
    }

    #[test]
    fn unknown_functions_and_missing_variables_are_errors_not_silence() {
        let tf = load(&[("main.tf", "locals { n = length([1]) }")], &[]).unwrap();
        let err = tf.local("n").unwrap_err().to_string();
        assert!(err.contains("length"), "{err}");
        assert!(tf.unresolved_locals().contains_key("n"));

        let err = load(&[("v.tf", r#"variable "project" {}"#)], &[]).unwrap_err();
        assert!(err.to_string().contains("project"), "{err}");
        let err = load(
            &[("w.tf", r#"variable "project" { default = "p" }"#)],
            &[("nope", Value::Null)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
