//! Reads a SAM template: the HTTP API's routes, each function's binary, memory, timeout and
//! environment. CloudFormation intrinsics are evaluated here (`!Ref`, `!Sub`, `!Join`, `!If`,
//! `!Equals`, `!Not`, `!And`, `!Or`, `!Select`, `!Split`, `!GetAtt`, `!FindInMap`, `!Base64`, in
//! short or long form), with parameters from the template's defaults, the overrides file and the
//! command line; dynamic references (`{{resolve:secretsmanager:...}}`, `{{resolve:ssm:...}}`)
//! and resources' physical names come from the overrides file. What cannot be resolved is an
//! error that names the template value and where to supply it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

/// Values the template cannot resolve on this machine (README: Serve the deployed shape
/// locally). Every string may name the gateway's environment: `${NAME}` or `${NAME:-default}`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Where they came from, for error messages.
    pub source: String,
    /// Template parameters (over the template's defaults).
    pub parameters: BTreeMap<String, Local>,
    /// `!Ref <resource>` (its physical name), `!GetAtt <resource>.<attribute>`, and pseudo
    /// parameters (`AWS::StackName`, `AWS::Region`, `AWS::AccountId`, ...).
    pub refs: BTreeMap<String, Local>,
    /// Secrets Manager secrets: name → key → value. They resolve
    /// `{{resolve:secretsmanager:<name>:SecretString:<key>}}`, and with an emulator endpoint the
    /// gateway writes them into its Secrets Manager for functions that read them at start-up.
    pub secrets: BTreeMap<String, BTreeMap<String, Local>>,
    /// `{{resolve:ssm:<name>}}`: parameter name → value.
    pub ssm: BTreeMap<String, Local>,
    /// Variables added to every function's environment on this machine only (the AWS endpoint
    /// of an emulator, say): never a substitute for what the template must set.
    pub environment: BTreeMap<String, Local>,
}

/// An override after `${NAME}` expansion: the value, or why it has none.
pub type Local = Result<String, String>;

impl Overrides {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
    }

    pub fn parse(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{source}: {e}"))?;
        let mut overrides = Self {
            source: source.to_owned(),
            ..Self::default()
        };
        let Some(root) = root.as_mapping() else {
            if root.is_null() {
                return Ok(overrides);
            }
            return Err(format!("{source}: expected a mapping"));
        };
        for (section, value) in root {
            let section = section.as_str().unwrap_or_default();
            let where_ = |key: &str| format!("{source}: {section}.{key}");
            match section {
                "Parameters" => overrides.parameters = flat(value, &where_, env)?,
                "Refs" => overrides.refs = flat(value, &where_, env)?,
                "Ssm" => overrides.ssm = flat(value, &where_, env)?,
                "Environment" => overrides.environment = flat(value, &where_, env)?,
                "Secrets" => {
                    for (name, keys) in value.as_mapping().into_iter().flatten() {
                        let name = scalar(name).unwrap_or_default();
                        let inner = |key: &str| format!("{source}: Secrets.{name}.{key}");
                        overrides
                            .secrets
                            .insert(name.clone(), flat(keys, &inner, env)?);
                    }
                }
                other => {
                    return Err(format!(
                        "{source}: unknown section {other:?} (Parameters, Refs, Secrets, Ssm, \
                         Environment)"
                    ))
                }
            }
        }
        Ok(overrides)
    }
}

fn flat(
    value: &Value,
    where_: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Local>, String> {
    let mut out = BTreeMap::new();
    let Some(mapping) = value.as_mapping() else {
        return if value.is_null() {
            Ok(out)
        } else {
            Err(format!("{}: expected a mapping", where_("")))
        };
    };
    for (key, value) in mapping {
        let key = scalar(key).ok_or_else(|| format!("{}: a key is not a string", where_("")))?;
        let text = scalar(value)
            .ok_or_else(|| format!("{}: expected a string or number", where_(&key)))?;
        out.insert(
            key.clone(),
            expand_env(&text, env).map_err(|e| format!("{}: {e}", where_(&key))),
        );
    }
    Ok(out)
}

/// `${NAME}` and `${NAME:-default}` from the environment; `$$` is a literal `$`.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One route of the HTTP API as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecl {
    /// `GET`, `POST`, ... or `ANY`; `None` for the `$default` route.
    pub method: Option<String>,
    /// The path as declared (`/api/totp/login/{code}`); `None` for `$default`.
    pub path: Option<String>,
    /// The event's name in the template (for messages).
    pub event: String,
}

impl RouteDecl {
    /// API Gateway's route key: `POST /api/user/create`, or `$default`.
    pub fn key(&self) -> String {
        match (&self.method, &self.path) {
            (Some(method), Some(path)) => format!("{method} {path}"),
            _ => "$default".to_owned(),
        }
    }
}

/// A Lambda function of the template, as the gateway runs it.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `FunctionName` resolved (or the logical id): `AWS_LAMBDA_FUNCTION_NAME`.
    pub name: String,
    /// The binary's name (cargo-lambda's `Binary`, else the handler).
    pub binary_name: String,
    /// The executable that is the function's `bootstrap`.
    pub binary: PathBuf,
    pub handler: String,
    pub runtime: String,
    pub architectures: Vec<String>,
    pub memory_mb: u64,
    pub timeout_secs: u64,
    pub log_group: String,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    /// The template's `Environment.Variables` (Globals merged), resolved.
    pub environment: BTreeMap<String, String>,
    pub routes: Vec<RouteDecl>,
}

/// The HTTP API the routes belong to.
#[derive(Debug, Clone)]
pub struct ApiSpec {
    pub logical_id: String,
    pub stage: String,
    /// `DefaultRouteSettings` throttling (requests per second, burst), when set.
    pub throttle: Option<(f64, f64)>,
    /// Whether the template configures CORS on the API (not emulated: start-up says so).
    pub cors: bool,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub api: ApiSpec,
    /// The functions HTTP routes reach: the ones the gateway runs.
    pub functions: Vec<FunctionSpec>,
    /// The other functions (logical id, their event source types): not run.
    pub not_run: Vec<(String, Vec<String>)>,
    pub region: String,
    pub account_id: String,
}

/// Where function binaries are found.
#[derive(Debug, Clone)]
pub enum Binaries {
    /// `<CodeUri>/target/lambda/<Binary>/bootstrap` (cargo lambda build --release), relative
    /// to the template's folder.
    CargoLambda,
    /// `<dir>/<Binary>/bootstrap`.
    Dir(PathBuf),
}

pub struct Template {
    root: Value,
    dir: PathBuf,
    overrides: Overrides,
    /// Command-line parameters, over the overrides file.
    params: BTreeMap<String, String>,
}

/// A resolved value, or the sentinel for `!Ref AWS::NoValue`.
const NO_VALUE: &str = "AWS::NoValue";

impl Template {
    pub fn load(
        path: &Path,
        overrides: Overrides,
        params: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, dir, overrides, params).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(
        text: &str,
        dir: PathBuf,
        overrides: Overrides,
        params: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if !root.is_mapping() {
            return Err("not a template (expected a mapping)".into());
        }
        Ok(Self {
            root,
            dir,
            overrides,
            params,
        })
    }

    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    fn resources(&self) -> impl Iterator<Item = (String, &Value)> {
        self.root["Resources"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (scalar(k).unwrap_or_default(), v))
    }

    fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.root["Resources"][logical_id]["Type"].as_str()
    }

    /// Every route of every function, without resolving anything else (what the route
    /// matching needs; the event-shape tests use it without secrets).
    pub fn routes(&self) -> Result<Vec<(String, RouteDecl)>, String> {
        let mut out = Vec::new();
        for (id, resource) in self.resources() {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            for route in self.function_routes(&id, resource)? {
                out.push((id.clone(), route));
            }
        }
        Ok(out)
    }

    fn function_routes(&self, id: &str, resource: &Value) -> Result<Vec<RouteDecl>, String> {
        let mut routes = Vec::new();
        for (name, event) in resource["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            let name = scalar(name).unwrap_or_default();
            match event["Type"].as_str() {
                Some("HttpApi") => {}
                Some("Api") => {
                    return Err(format!(
                        "{id}.Events.{name}: a REST API (Type: Api) event; the gateway serves \
                         HTTP APIs (Type: HttpApi) only"
                    ))
                }
                _ => continue,
            }
            // ApiId is a resource reference: not evaluated (it has no local value to need).
            let property = |key: &str| {
                self.eval(&event["Properties"][key])
                    .map_err(|e| format!("{id}.Events.{name}.{key}: {e}"))
            };
            let version = property("PayloadFormatVersion")?;
            if let Some(version) = version
                .as_str()
                .map(str::to_owned)
                .or_else(|| version.as_f64().map(|v| format!("{v:.1}")))
            {
                if version != "2.0" {
                    return Err(format!(
                        "{id}.Events.{name}: PayloadFormatVersion {version}: only 2.0 is served"
                    ));
                }
            }
            let method = property("Method")?.as_str().map(str::to_uppercase);
            let path = property("Path")?.as_str().map(str::to_owned);
            let (method, path) = match (method, path) {
                (None, None) => (None, None),
                (Some(m), Some(p)) if m == "ANY" && p == "$default" => (None, None),
                (Some(m), Some(p)) => {
                    if !p.starts_with('/') {
                        return Err(format!("{id}.Events.{name}: Path {p:?} must start with /"));
                    }
                    (
                        Some(if m == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
                            "ANY".into()
                        } else {
                            m
                        }),
                        Some(p),
                    )
                }
                _ => {
                    return Err(format!(
                        "{id}.Events.{name}: give both Method and Path (or neither, for $default)"
                    ))
                }
            };
            routes.push(RouteDecl {
                method,
                path,
                event: format!("{id}.Events.{name}"),
            });
        }
        Ok(routes)
    }

    /// The whole deployment: the API, and every function with its routes, binary and
    /// environment. Every unresolvable value is reported at once.
    pub fn deployment(&self, binaries: &Binaries) -> Result<Deployment, String> {
        let mut errors = Vec::new();
        let globals = self.root["Globals"]["Function"].clone();
        let mut functions = Vec::new();
        let mut api_ids = Vec::new();
        let mut not_run = Vec::new();
        for (id, resource) in self.resources() {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            // A function no route reaches (a stream or queue consumer) is not run: its event
            // source is not emulated. Start-up names it.
            match self.function_routes(&id, resource) {
                Ok(routes) if routes.is_empty() => {
                    let sources: Vec<String> = resource["Properties"]["Events"]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, e)| e["Type"].as_str().map(str::to_owned))
                        .collect();
                    not_run.push((id.clone(), sources));
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
            match self.function(&id, resource, &globals, binaries) {
                Ok(function) => {
                    for (_, event) in resource["Properties"]["Events"]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                    {
                        if event["Type"].as_str() == Some("HttpApi") {
                            let api = match &event["Properties"]["ApiId"] {
                                Value::Null => "ServerlessHttpApi".to_owned(),
                                v => ref_target(v).unwrap_or_else(|| "?".into()),
                            };
                            if !api_ids.contains(&api) {
                                api_ids.push(api);
                            }
                        }
                    }
                    functions.push(function);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        if functions.is_empty() {
            return Err("no AWS::Serverless::Function has an HttpApi event".into());
        }
        if api_ids.len() > 1 {
            return Err(format!(
                "routes belong to several HTTP APIs ({}): the gateway serves one",
                api_ids.join(", ")
            ));
        }
        let api_id = api_ids.remove(0);
        let api = self.api(&api_id)?;
        // API Gateway refuses two routes with one key.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for function in &functions {
            for route in &function.routes {
                let key = normalized_key(route);
                if let Some(other) = seen.insert(key.clone(), route.event.clone()) {
                    return Err(format!(
                        "route {} is declared twice ({other} and {})",
                        route.key(),
                        route.event
                    ));
                }
            }
        }
        Ok(Deployment {
            api,
            functions,
            not_run,
            region: self.pseudo("AWS::Region")?,
            account_id: self.pseudo("AWS::AccountId")?,
        })
    }

    fn api(&self, id: &str) -> Result<ApiSpec, String> {
        let resource = &self.root["Resources"][id];
        if id != "ServerlessHttpApi"
            && resource["Type"].as_str() != Some("AWS::Serverless::HttpApi")
        {
            return Err(format!(
                "routes name ApiId {id}, which is not an AWS::Serverless::HttpApi of the template"
            ));
        }
        // Only what the gateway uses: access logs and the like need no local value.
        let mut properties = Mapping::new();
        for key in ["StageName", "DefaultRouteSettings", "CorsConfiguration"] {
            let value = self
                .eval(&resource["Properties"][key])
                .map_err(|e| format!("{id}.{key}: {e}"))?;
            properties.insert(Value::String(key.to_owned()), value);
        }
        let properties = Value::Mapping(properties);
        let stage = properties["StageName"]
            .as_str()
            .unwrap_or("$default")
            .to_owned();
        let settings = &properties["DefaultRouteSettings"];
        let number = |v: &Value| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        };
        let throttle = match (
            number(&settings["ThrottlingRateLimit"]),
            number(&settings["ThrottlingBurstLimit"]),
        ) {
            (Some(rate), Some(burst)) => Some((rate, burst)),
            _ => None,
        };
        let cors = !matches!(
            properties["CorsConfiguration"],
            Value::Null | Value::Bool(false)
        ) && !is_no_value(&properties["CorsConfiguration"]);
        Ok(ApiSpec {
            logical_id: id.to_owned(),
            stage,
            throttle,
            cors,
        })
    }

    fn function(
        &self,
        id: &str,
        resource: &Value,
        globals: &Value,
        binaries: &Binaries,
    ) -> Result<FunctionSpec, String> {
        let routes = self.function_routes(id, resource)?;
        let own = &resource["Properties"];
        let property = |name: &str| -> Value {
            match &own[name] {
                Value::Null => globals[name].clone(),
                v => v.clone(),
            }
        };
        let mut errors = Vec::new();
        let mut string = |name: &str, default: &str| -> String {
            match self.eval(&property(name)) {
                Ok(Value::Null) => default.to_owned(),
                Ok(v) => scalar(&v).unwrap_or_else(|| {
                    errors.push(format!("{id}.{name}: not a scalar"));
                    String::new()
                }),
                Err(e) => {
                    errors.push(format!("{id}.{name}: {e}"));
                    String::new()
                }
            }
        };
        let runtime = string("Runtime", "");
        let handler = string("Handler", "bootstrap");
        let memory_mb = string("MemorySize", "128").parse().unwrap_or(128);
        let timeout_secs = string("Timeout", "3").parse().unwrap_or(3);
        let code_uri = string("CodeUri", ".");
        let name = string("FunctionName", id);
        let mut environment = BTreeMap::new();
        // Globals first, the function's own over them (SAM merges maps).
        for source in [
            &globals["Environment"]["Variables"],
            &own["Environment"]["Variables"],
        ] {
            for (key, value) in source.as_mapping().into_iter().flatten() {
                let key = scalar(key).unwrap_or_default();
                match self.eval(value).and_then(|v| self.env_string(&v)) {
                    Ok(Some(value)) => {
                        environment.insert(key, value);
                    }
                    Ok(None) => {
                        environment.remove(&key);
                    }
                    Err(e) => errors.push(format!("{id}: environment variable {key}: {e}")),
                }
            }
        }
        let logging = match self.eval(&property("LoggingConfig")) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{id}.LoggingConfig: {e}"));
                Value::Null
            }
        };
        let architectures = match self.eval(&property("Architectures")) {
            Ok(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
            _ => vec!["x86_64".to_owned()],
        };
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        if !runtime.starts_with("provided") {
            return Err(format!(
                "{id}: Runtime {runtime:?}: the gateway runs custom runtimes (provided.*) only"
            ));
        }
        let cargo_binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .map(str::to_owned);
        let is_cargo_lambda =
            resource["Metadata"]["BuildMethod"].as_str() == Some("rust-cargolambda");
        let binary_name = cargo_binary.clone().unwrap_or_else(|| handler.clone());
        let binary = match (binaries, is_cargo_lambda) {
            (Binaries::Dir(dir), _) => dir.join(&binary_name).join("bootstrap"),
            (Binaries::CargoLambda, true) => self
                .dir
                .join(&code_uri)
                .join("target/lambda")
                .join(&binary_name)
                .join("bootstrap"),
            (Binaries::CargoLambda, false) => self.dir.join(&code_uri).join(&handler),
        };
        // Absolute: the process runs in its own folder (LAMBDA_TASK_ROOT).
        let binary = std::path::absolute(&binary).unwrap_or(binary);
        let log_group = logging["LogGroup"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/aws/lambda/{name}"));
        Ok(FunctionSpec {
            logical_id: id.to_owned(),
            name,
            binary_name,
            binary,
            handler,
            runtime,
            architectures,
            memory_mb,
            timeout_secs,
            log_group,
            log_format: logging["LogFormat"].as_str().map(str::to_owned),
            log_level: logging["ApplicationLogLevel"].as_str().map(str::to_owned),
            environment,
            routes,
        })
    }

    /// An environment value as the function gets it (`None`: removed by `AWS::NoValue`).
    fn env_string(&self, value: &Value) -> Result<Option<String>, String> {
        if is_no_value(value) {
            return Ok(None);
        }
        let text = scalar(value).ok_or_else(|| "does not resolve to a string".to_owned())?;
        self.dynamic_references(&text).map(Some)
    }

    /// Replaces `{{resolve:secretsmanager:...}}` and `{{resolve:ssm:...}}` by their local values.
    fn dynamic_references(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{resolve:") {
            out.push_str(&rest[..start]);
            let body = &rest[start + "{{resolve:".len()..];
            let end = body
                .find("}}")
                .ok_or_else(|| format!("unclosed dynamic reference in {text:?}"))?;
            let reference = &body[..end];
            out.push_str(&self.resolve_reference(reference)?);
            rest = &body[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resolve_reference(&self, reference: &str) -> Result<String, String> {
        let source = &self.overrides.source;
        let (service, rest) = reference.split_once(':').unwrap_or((reference, ""));
        match service {
            "secretsmanager" => {
                // secret-id:SecretString:json-key:version-stage:version-id
                let parts: Vec<&str> = rest.split(':').collect();
                let name = parts[0];
                let key = parts.get(2).copied().unwrap_or("");
                let secret = self.overrides.secrets.get(name).ok_or_else(|| {
                    format!(
                        "{{{{resolve:{reference}}}}}: give secret {name:?} in {source} \
                         (Secrets: {name}: {{{key}: ...}})"
                    )
                })?;
                let key = if key.is_empty() { "SecretString" } else { key };
                match secret.get(key) {
                    Some(value) => value.clone(),
                    None => Err(format!(
                        "{{{{resolve:{reference}}}}}: secret {name:?} in {source} has no key {key:?}"
                    )),
                }
            }
            "ssm" | "ssm-secure" => {
                let name = rest.split(':').next().unwrap_or_default();
                match self.overrides.ssm.get(name) {
                    Some(value) => value.clone(),
                    None => Err(format!(
                        "{{{{resolve:{reference}}}}}: give SSM parameter {name:?} in {source} (Ssm:)"
                    )),
                }
            }
            other => Err(format!(
                "{{{{resolve:{reference}}}}}: {other} references are not resolved locally"
            )),
        }
    }

    fn pseudo(&self, name: &str) -> Result<String, String> {
        if let Some(value) = self.overrides.refs.get(name) {
            return value.clone();
        }
        Ok(match name {
            "AWS::Region" => std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "us-east-1".into()),
            "AWS::AccountId" => "123456789012".into(),
            "AWS::StackName" => "local".into(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:123456789012:stack/local/local",
                self.pseudo("AWS::Region")?
            ),
            other => return Err(format!("pseudo parameter {other} is not known locally")),
        })
    }

    /// `!Ref name`.
    fn reference(&self, name: &str) -> Result<Value, String> {
        if name == NO_VALUE {
            return Ok(no_value());
        }
        if name.starts_with("AWS::") {
            return self.pseudo(name).map(Value::String);
        }
        if let Some(declared) = self.root["Parameters"].get(name) {
            let value = match self.params.get(name) {
                Some(v) => v.clone(),
                None => match self.overrides.parameters.get(name) {
                    Some(v) => v.clone()?,
                    None => match &declared["Default"] {
                        Value::Null => {
                            return Err(format!(
                                "parameter {name} has no default: give it in {} (Parameters: \
                                 {name}: ...) or with --param {name}=...",
                                self.overrides.source
                            ))
                        }
                        v => scalar(v).unwrap_or_default(),
                    },
                },
            };
            let kind = declared["Type"].as_str().unwrap_or("String");
            if kind == "CommaDelimitedList" || kind.starts_with("List<") {
                return Ok(Value::Sequence(
                    value
                        .split(',')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .collect(),
                ));
            }
            return Ok(Value::String(value));
        }
        if self.resource_type(name).is_some() {
            // A resource's Ref is its physical name: the overrides', else the one it declares.
            let declared = [
                "LogGroupName",
                "TableName",
                "TopicName",
                "QueueName",
                "FunctionName",
            ]
            .iter()
            .map(|p| &self.root["Resources"][name]["Properties"][*p])
            .find(|v| !v.is_null());
            return match (self.overrides.refs.get(name), declared) {
                (Some(v), _) => v.clone().map(Value::String),
                (None, Some(declared)) => self.eval(declared),
                (None, None) => Err(format!(
                    "!Ref {name}: a resource; give its local name in {} (Refs: {name}: ...)",
                    self.overrides.source
                )),
            };
        }
        Err(format!("!Ref {name}: no such parameter or resource"))
    }

    fn get_att(&self, target: &str) -> Result<Value, String> {
        match self.overrides.refs.get(target) {
            Some(v) => v.clone().map(Value::String),
            None => Err(format!(
                "!GetAtt {target}: give its local value in {} (Refs: {target}: ...)",
                self.overrides.source
            )),
        }
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let declared = self.root["Conditions"]
            .get(name)
            .ok_or_else(|| format!("no condition {name}"))?;
        truth(&self.eval(declared)?)
    }

    /// Evaluates the intrinsics in `value`.
    pub fn eval(&self, value: &Value) -> Result<Value, String> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let name = if name == "Ref" || name == "Condition" {
                    name.to_owned()
                } else {
                    format!("Fn::{name}")
                };
                self.intrinsic(&name, &tagged.value)
            }
            Value::Mapping(mapping) => {
                if mapping.len() == 1 {
                    let (key, argument) = mapping.iter().next().expect("one entry");
                    if let Some(key) = key.as_str() {
                        if key == "Ref" || key.starts_with("Fn::") || key == "Condition" {
                            return self.intrinsic(key, argument);
                        }
                    }
                }
                let mut out = Mapping::new();
                for (k, v) in mapping {
                    let v = self.eval(v)?;
                    if !is_no_value(&v) {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Value::Mapping(out))
            }
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for item in items {
                    let v = self.eval(item)?;
                    if !is_no_value(&v) {
                        out.push(v);
                    }
                }
                Ok(Value::Sequence(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn intrinsic(&self, name: &str, argument: &Value) -> Result<Value, String> {
        let args = || -> Result<Vec<Value>, String> {
            match self.eval(argument)? {
                Value::Sequence(items) => Ok(items),
                other => Err(format!("{name}: expected a list, got {other:?}")),
            }
        };
        match name {
            "Ref" => {
                let target = scalar(&self.eval(argument)?)
                    .ok_or_else(|| "Ref: expected a name".to_owned())?;
                self.reference(&target)
            }
            "Condition" => {
                let target = scalar(argument).ok_or("Condition: expected a name")?;
                self.condition(&target).map(Value::Bool)
            }
            "Fn::Sub" => {
                let (text, vars) = match argument {
                    Value::Sequence(items) if items.len() == 2 => {
                        let text = scalar(&items[0]).ok_or("Fn::Sub: expected a string")?;
                        (text, self.eval(&items[1])?)
                    }
                    other => (
                        scalar(&self.eval(other)?).ok_or("Fn::Sub: expected a string")?,
                        Value::Null,
                    ),
                };
                self.sub(&text, &vars).map(Value::String)
            }
            "Fn::Join" => {
                let args = args()?;
                let [delimiter, items] = args.as_slice() else {
                    return Err("Fn::Join: expected [delimiter, list]".into());
                };
                let delimiter = scalar(delimiter).unwrap_or_default();
                let items = items.as_sequence().ok_or("Fn::Join: expected a list")?;
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                Ok(Value::String(
                    parts
                        .ok_or("Fn::Join: a part is not a string")?
                        .join(&delimiter),
                ))
            }
            "Fn::Select" => {
                let args = args()?;
                let [index, items] = args.as_slice() else {
                    return Err("Fn::Select: expected [index, list]".into());
                };
                let index: usize = scalar(index)
                    .and_then(|i| i.parse().ok())
                    .ok_or("Fn::Select: bad index")?;
                items
                    .as_sequence()
                    .and_then(|items| items.get(index))
                    .cloned()
                    .ok_or_else(|| "Fn::Select: index out of range".to_owned())
            }
            "Fn::Split" => {
                let args = args()?;
                let [delimiter, text] = args.as_slice() else {
                    return Err("Fn::Split: expected [delimiter, string]".into());
                };
                let delimiter = scalar(delimiter).unwrap_or_default();
                let text = scalar(text).ok_or("Fn::Split: expected a string")?;
                Ok(Value::Sequence(
                    text.split(delimiter.as_str())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
            "Fn::If" => {
                let Value::Sequence(items) = argument else {
                    return Err("Fn::If: expected [condition, then, else]".into());
                };
                let [condition, then, otherwise] = items.as_slice() else {
                    return Err("Fn::If: expected [condition, then, else]".into());
                };
                let condition = scalar(condition).ok_or("Fn::If: expected a condition name")?;
                if self.condition(&condition)? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
            "Fn::Equals" => {
                let args = args()?;
                let [a, b] = args.as_slice() else {
                    return Err("Fn::Equals: expected two values".into());
                };
                Ok(Value::Bool(
                    scalar(a) == scalar(b) && a.is_sequence() == b.is_sequence(),
                ))
            }
            "Fn::Not" => {
                let args = args()?;
                let [a] = args.as_slice() else {
                    return Err("Fn::Not: expected one condition".into());
                };
                Ok(Value::Bool(!truth(a)?))
            }
            "Fn::And" | "Fn::Or" => {
                let values: Result<Vec<bool>, String> = args()?.iter().map(truth).collect();
                let values = values?;
                Ok(Value::Bool(if name == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                }))
            }
            "Fn::GetAtt" => {
                let target = match self.eval(argument)? {
                    Value::Sequence(items) => items
                        .iter()
                        .filter_map(scalar)
                        .collect::<Vec<_>>()
                        .join("."),
                    other => scalar(&other).ok_or("Fn::GetAtt: expected a name")?,
                };
                self.get_att(&target)
            }
            "Fn::FindInMap" => {
                let args = args()?;
                let keys: Option<Vec<String>> = args.iter().map(scalar).collect();
                let keys = keys.ok_or("Fn::FindInMap: expected names")?;
                let [map, top, second] = keys.as_slice() else {
                    return Err("Fn::FindInMap: expected [map, key, key]".into());
                };
                let found = &self.root["Mappings"][map.as_str()][top.as_str()][second.as_str()];
                if found.is_null() {
                    return Err(format!("Fn::FindInMap: no {map}.{top}.{second}"));
                }
                self.eval(found)
            }
            "Fn::Base64" => {
                use base64::Engine;
                let text = scalar(&self.eval(argument)?).ok_or("Fn::Base64: expected a string")?;
                Ok(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(text),
                ))
            }
            other => Err(format!("{other} is not evaluated locally")),
        }
    }

    fn sub(&self, text: &str, vars: &Value) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let body = &rest[start + 2..];
            let end = body
                .find('}')
                .ok_or_else(|| format!("Fn::Sub: unclosed ${{ in {text:?}"))?;
            let expr = &body[..end];
            if let Some(literal) = expr.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = vars.get(expr) {
                out.push_str(&scalar(value).ok_or("Fn::Sub: a variable is not a string")?);
            } else if expr.contains('.') && !expr.starts_with("AWS::") {
                out.push_str(
                    &scalar(&self.get_att(expr)?).ok_or("Fn::Sub: attribute is not a string")?,
                );
            } else {
                let value = self.reference(expr)?;
                out.push_str(
                    &scalar(&value)
                        .ok_or_else(|| format!("Fn::Sub: ${{{expr}}} is not a string"))?,
                );
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `{route key}` with the path's parameter names blanked: `/a/{x}` and `/a/{y}` are one route.
fn normalized_key(route: &RouteDecl) -> String {
    match (&route.method, &route.path) {
        (Some(method), Some(path)) => {
            let path: Vec<String> = path
                .trim_end_matches('/')
                .split('/')
                .map(|s| {
                    if s.ends_with("+}") {
                        "{+}".to_owned()
                    } else if s.starts_with('{') {
                        "{}".to_owned()
                    } else {
                        s.to_owned()
                    }
                })
                .collect();
            format!("{method} {}", path.join("/"))
        }
        _ => "$default".into(),
    }
}

fn ref_target(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => scalar(&tagged.value),
        Value::Mapping(m) => m.get("Ref").and_then(scalar),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn no_value() -> Value {
    Value::String(NO_VALUE.to_owned())
}

fn is_no_value(value: &Value) -> bool {
    value.as_str() == Some(NO_VALUE)
}

fn truth(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(format!("expected a condition, got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(text: &str) -> Overrides {
        Overrides::parse(text, "overrides.yaml", &|name| match name {
            "SET" => Some("from-env".into()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn environment_expansion_reads_variables_and_defaults() {
        let env = |name: &str| (name == "A").then(|| "a".to_owned());
        assert_eq!(expand_env("x${A}y", &env).unwrap(), "xay");
        assert_eq!(expand_env("${B:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_env("$$5 and $", &env).unwrap(), "$5 and $");
        assert!(expand_env("${B}", &env)
            .unwrap_err()
            .contains("B is not set"));
    }

    const TEMPLATE: &str = r#"
Parameters:
  Name: {Type: String, Default: dflt}
  Needed: {Type: String}
  Origins: {Type: CommaDelimitedList, Default: ""}
  Secret: {Type: String, Default: keys}
Conditions:
  HasOrigins: !Not [!Equals [!Join ["", !Ref Origins], ""]]
Globals:
  Function:
    Runtime: provided.al2023
    Timeout: 7
    Environment:
      Variables:
        TABLE: !Ref Table
        JOINED: !Join [",", !Ref Origins]
        KEY: !Sub "{{resolve:secretsmanager:${Secret}:SecretString:key}}"
        NAME: !Sub "${AWS::StackName}-${Name}"
        GONE: !If [HasOrigins, yes, !Ref AWS::NoValue]
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Api: {Type: AWS::Serverless::HttpApi, Properties: {StageName: $default}}
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: fn}}
    Properties:
      CodeUri: ..
      MemorySize: 256
      Environment: {Variables: {OWN: !Ref Needed, NAME: own}}
      Events:
        A: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: post, Path: "/a/{code}"}}
        B: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      Environment: {Variables: {UNRESOLVABLE: !GetAtt Nowhere.Arn}}
      Events:
        Changes: {Type: DynamoDB, Properties: {Stream: !GetAtt Table.StreamArn}}
"#;

    #[test]
    fn a_function_gets_globals_and_its_own_environment_resolved() {
        let template = Template::parse(
            TEMPLATE,
            PathBuf::from("/repo/infra"),
            overrides(
                "Refs: {Table: local-table}\nSecrets: {keys: {key: \"${SET}\"}}\n\
                 Parameters: {Needed: given}\n",
            ),
            BTreeMap::new(),
        )
        .unwrap();
        let deployment = template.deployment(&Binaries::CargoLambda).unwrap();
        let function = &deployment.functions[0];
        assert_eq!(
            function.binary,
            PathBuf::from("/repo/infra/../target/lambda/fn/bootstrap")
        );
        assert_eq!((function.memory_mb, function.timeout_secs), (256, 7));
        let env: Vec<(&str, &str)> = function
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("JOINED", ""),
                ("KEY", "from-env"),
                ("NAME", "own"),
                ("OWN", "given"),
                ("TABLE", "local-table"),
            ]
        );
        let keys: Vec<String> = function.routes.iter().map(RouteDecl::key).collect();
        assert_eq!(keys, ["POST /a/{code}", "$default"]);
        assert_eq!(deployment.api.stage, "$default");
        // No route reaches the stream consumer: not run, not resolved, named.
        assert_eq!(
            deployment.not_run,
            [("Consumer".to_owned(), vec!["DynamoDB".to_owned()])]
        );
    }

    #[test]
    fn what_cannot_be_resolved_is_reported_with_where_to_give_it() {
        let template =
            Template::parse(TEMPLATE, PathBuf::from("."), overrides(""), BTreeMap::new()).unwrap();
        let error = template.deployment(&Binaries::CargoLambda).unwrap_err();
        assert!(error.contains("TABLE: !Ref Table: a resource; give its local name in overrides.yaml (Refs: Table: ...)"), "{error}");
        assert!(
            error.contains(
                "KEY: {{resolve:secretsmanager:keys:SecretString:key}}: give secret \"keys\""
            ),
            "{error}"
        );
        assert!(error.contains("parameter Needed has no default"), "{error}");
        // A command-line parameter wins over everything.
        let with_param = Template::parse(
            TEMPLATE,
            PathBuf::from("."),
            overrides("Refs: {Table: t}\nSecrets: {keys: {key: \"${UNSET}\"}}"),
            BTreeMap::from([("Needed".to_owned(), "p".to_owned())]),
        )
        .unwrap();
        let error = with_param.deployment(&Binaries::CargoLambda).unwrap_err();
        assert_eq!(
            error,
            "Fn: environment variable KEY: overrides.yaml: Secrets.keys.key: environment variable UNSET is not set"
        );
    }

    #[test]
    fn conditions_pick_a_branch() {
        let template = Template::parse(
            TEMPLATE,
            PathBuf::from("."),
            overrides("Refs: {Table: t}\nSecrets: {keys: {key: k}}\nParameters: {Needed: n, Origins: \"https://a,https://b\"}"),
            BTreeMap::new(),
        )
        .unwrap();
        let function = &template
            .deployment(&Binaries::CargoLambda)
            .unwrap()
            .functions[0];
        assert_eq!(function.environment["GONE"], "yes");
        assert_eq!(function.environment["JOINED"], "https://a,https://b");
    }

    #[test]
    fn a_route_declared_twice_is_refused() {
        let text = TEMPLATE.replace(
            "B: {Type: HttpApi, Properties: {ApiId: !Ref Api}}",
            r#"B: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: "/a/{other}"}}"#,
        );
        let template = Template::parse(
            &text,
            PathBuf::from("."),
            overrides("Refs: {Table: t}\nSecrets: {keys: {key: k}}\nParameters: {Needed: n}"),
            BTreeMap::new(),
        )
        .unwrap();
        let error = template.deployment(&Binaries::CargoLambda).unwrap_err();
        assert!(error.contains("declared twice"), "{error}");
    }
}
