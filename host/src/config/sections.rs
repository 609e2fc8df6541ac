//! Sections that appear in several places: NATS `tls` stanzas, Prometheus-style HTTP client
//! settings (`tls_config`, `basic_auth`, `authorization`), filter chains, and `management`.
//! Each reads its keys, reports unknown ones and checks its own combinations.

use super::build::Builder;
use super::endpoints::nats_urls;
use super::reader::{Fields, Problems};
use super::types::*;
use super::yaml::Node;

/// A `tls` stanza. `identity` defaults to the config's identity.
pub(super) fn tls(
    cx: &mut Builder<'_>,
    key: &str,
    node: &Node,
    identity: &str,
) -> Option<TlsConfig> {
    let mut fields = cx.problems.mapping(key, node)?;
    let scheme = cx.required(
        &mut fields,
        "scheme",
        "manual (alias file) or puppet",
        |problems, key, node| match node.scalar().map(str::to_ascii_lowercase).as_deref() {
            Some("manual" | "file") => Some(TlsScheme::Manual),
            Some("puppet") => Some(TlsScheme::Puppet),
            _ => {
                problems.at(
                    key,
                    node,
                    format!(
                        "{} is not a TLS scheme (use manual, file or puppet)",
                        node.describe()
                    ),
                );
                None
            }
        },
    );
    let identity = cx
        .read(&mut fields, "identity", Problems::nonempty)
        .unwrap_or_else(|| identity.to_string());
    let ca = cx.path(&mut fields, "ca");
    let cert = cx.path(&mut fields, "cert");
    let key_file = cx.path(&mut fields, "key");
    let cache = cx.path(&mut fields, "cache");
    let ssl_dir = cx.path(&mut fields, "ssl_dir");
    let source = match scheme {
        Some(TlsScheme::Manual) => {
            if ssl_dir.is_some() {
                not_for_scheme(cx, &fields, "ssl_dir", "manual", "puppet");
            }
            for (name, value) in [("ca", &ca), ("cert", &cert), ("key", &key_file)] {
                if value.is_none() && !fields.has(name) {
                    fields.missing(
                        &mut cx.problems,
                        name,
                        "scheme manual needs ca, cert and key",
                    );
                }
            }
            match (ca, cert, key_file) {
                (Some(ca), Some(cert), Some(key)) => Some(TlsSource::Manual {
                    ca,
                    cert,
                    key,
                    cache,
                }),
                _ => None,
            }
        }
        Some(TlsScheme::Puppet) => {
            for (name, value) in [
                ("ca", &ca),
                ("cert", &cert),
                ("key", &key_file),
                ("cache", &cache),
            ] {
                if value.is_some() {
                    not_for_scheme(cx, &fields, name, "puppet", "manual");
                }
            }
            Some(TlsSource::Puppet {
                ssl_dir: ssl_dir.unwrap_or_else(|| DEFAULT_PUPPET_SSL_DIR.into()),
            })
        }
        None => None,
    };
    fields.finish(&mut cx.problems);
    Some(TlsConfig {
        identity,
        source: source?,
    })
}

fn not_for_scheme(
    cx: &mut Builder<'_>,
    fields: &Fields<'_>,
    name: &str,
    scheme: &str,
    other: &str,
) {
    cx.problems.add(
        &fields.key(name),
        fields.key_line(name),
        format!("is not used by scheme {scheme} (only by scheme {other})"),
    );
}

/// `tls_config`, `basic_auth` and `authorization` of the mapping `fields`, as in Prometheus.
pub(super) fn http_client(cx: &mut Builder<'_>, fields: &mut Fields<'_>) -> HttpClientConfig {
    let tls = fields
        .take("tls_config")
        .and_then(|node| http_tls(cx, &fields.key("tls_config"), node));
    let basic_auth = fields
        .take("basic_auth")
        .and_then(|node| basic_auth(cx, &fields.key("basic_auth"), node));
    let authorization = fields
        .take("authorization")
        .and_then(|node| authorization(cx, &fields.key("authorization"), node));
    if basic_auth.is_some() && authorization.is_some() {
        cx.problems.add(
            &fields.key("authorization"),
            fields.key_line("authorization"),
            "basic_auth and authorization are mutually exclusive",
        );
    }
    HttpClientConfig {
        tls,
        basic_auth,
        authorization,
    }
}

fn http_tls(cx: &mut Builder<'_>, key: &str, node: &Node) -> Option<HttpTlsConfig> {
    let mut fields = cx.problems.mapping(key, node)?;
    let config = HttpTlsConfig {
        ca_file: cx.path(&mut fields, "ca_file"),
        cert_file: cx.path(&mut fields, "cert_file"),
        key_file: cx.path(&mut fields, "key_file"),
        server_name: cx.read(&mut fields, "server_name", Problems::nonempty),
        insecure_skip_verify: cx
            .read(&mut fields, "insecure_skip_verify", Problems::boolean)
            .unwrap_or(false),
    };
    match (&config.cert_file, &config.key_file) {
        (Some(_), None) => fields.missing(&mut cx.problems, "key_file", "cert_file needs key_file"),
        (None, Some(_)) => {
            fields.missing(&mut cx.problems, "cert_file", "key_file needs cert_file")
        }
        _ => {}
    }
    fields.finish(&mut cx.problems);
    Some(config)
}

/// Reads `name` and `name_file` as one secret; both set is a problem.
fn secret_pair(cx: &mut Builder<'_>, fields: &mut Fields<'_>, name: &str) -> Option<SecretSource> {
    let file_name = format!("{name}_file");
    let inline = cx.read(fields, name, Problems::string);
    let file = cx.path(fields, &file_name);
    match (inline, file) {
        (Some(_), Some(_)) => {
            cx.problems.add(
                &fields.key(&file_name),
                fields.key_line(&file_name),
                format!("{name} and {file_name} are mutually exclusive"),
            );
            None
        }
        (Some(inline), None) => Some(SecretSource::Inline(Secret::new(inline))),
        (None, Some(file)) => Some(SecretSource::File(file)),
        (None, None) => None,
    }
}

fn basic_auth(cx: &mut Builder<'_>, key: &str, node: &Node) -> Option<BasicAuth> {
    let mut fields = cx.problems.mapping(key, node)?;
    let username = cx.required(&mut fields, "username", "", Problems::nonempty);
    let password = secret_pair(cx, &mut fields, "password");
    fields.finish(&mut cx.problems);
    Some(BasicAuth {
        username: username?,
        password,
    })
}

fn authorization(cx: &mut Builder<'_>, key: &str, node: &Node) -> Option<Authorization> {
    let mut fields = cx.problems.mapping(key, node)?;
    let kind = cx
        .read(&mut fields, "type", |problems, key, node| {
            let kind = problems.nonempty(key, node)?;
            if kind.eq_ignore_ascii_case("basic") {
                problems.at(key, node, "type Basic is not allowed here: use basic_auth");
                return None;
            }
            if kind.contains(char::is_whitespace) {
                problems.at(key, node, format!("{kind:?} must be one word"));
                return None;
            }
            Some(kind)
        })
        .unwrap_or_else(|| "Bearer".to_string());
    let credentials = secret_pair(cx, &mut fields, "credentials");
    if credentials.is_none() && !fields.has("credentials") && !fields.has("credentials_file") {
        fields.missing(&mut cx.problems, "credentials", "or credentials_file");
    }
    fields.finish(&mut cx.problems);
    Some(Authorization {
        kind,
        credentials: credentials?,
    })
}

/// A filter chain: a list of `{name, module, on_error, limits, config}`.
pub(super) fn filters(cx: &mut Builder<'_>, key: &str, node: &Node) -> Vec<FilterConfig> {
    let Some(items) = cx.problems.sequence(key, node) else {
        return Vec::new();
    };
    let mut chain: Vec<FilterConfig> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("{key}[{index}]");
        let Some(filter) = filter(cx, &key, item) else {
            continue;
        };
        if chain.iter().any(|other| other.name == filter.name) {
            cx.problems.at(
                &format!("{key}.name"),
                item,
                format!("filter name {:?} is used twice in this chain", filter.name),
            );
            continue;
        }
        chain.push(filter);
    }
    chain
}

fn filter(cx: &mut Builder<'_>, key: &str, node: &Node) -> Option<FilterConfig> {
    let mut fields = cx.problems.mapping(key, node)?;
    let name = cx.required(&mut fields, "name", "", |problems, key, node| {
        let name = problems.nonempty(key, node)?;
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            Some(name)
        } else {
            problems.at(
                key,
                node,
                format!("{name:?}: use letters, digits, '_', '-' and '.' only"),
            );
            None
        }
    });
    let module = if fields.take("module").is_some() {
        cx.path(&mut fields, "module")
    } else {
        fields.missing(
            &mut cx.problems,
            "module",
            "the path of the filter's .wasm file",
        );
        None
    };
    let on_error = cx
        .read(&mut fields, "on_error", |problems, key, node| {
            match node.scalar().map(str::to_ascii_lowercase).as_deref() {
                Some("pass") => Some(OnError::Pass),
                Some("drop") => Some(OnError::Drop),
                Some("fail") => Some(OnError::Fail),
                _ => {
                    problems.at(
                        key,
                        node,
                        format!(
                            "{} is not a policy (use pass, drop or fail)",
                            node.describe()
                        ),
                    );
                    None
                }
            }
        })
        .unwrap_or(OnError::Drop);
    let limits = match fields.take("limits") {
        Some(node) => filter_limits(cx, &fields.key("limits"), node),
        None => FilterLimits::default(),
    };
    let config = match fields.take("config") {
        Some(node) => node.to_json(),
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    fields.finish(&mut cx.problems);
    Some(FilterConfig {
        name: name?,
        module: module?,
        on_error,
        limits,
        config,
    })
}

fn filter_limits(cx: &mut Builder<'_>, key: &str, node: &Node) -> FilterLimits {
    let defaults = FilterLimits::default();
    let Some(mut fields) = cx.problems.mapping(key, node) else {
        return defaults;
    };
    let time = cx
        .read(&mut fields, "time", |problems, key, node| {
            let time = problems.positive_duration(key, node)?;
            if time > std::time::Duration::from_secs(60) {
                problems.at(key, node, "must be at most 60s");
                return None;
            }
            Some(time)
        })
        .unwrap_or(defaults.time);
    let memory = cx
        .read(&mut fields, "memory", |problems, key, node| {
            let memory = problems.bytes(key, node)?;
            if !(64 * 1024..=4 * 1024 * 1024 * 1024).contains(&memory) {
                problems.at(
                    key,
                    node,
                    "must be between 64KiB (one wasm page) and 4GiB (the wasm32 limit)",
                );
                return None;
            }
            Some(memory)
        })
        .unwrap_or(defaults.memory);
    fields.finish(&mut cx.problems);
    FilterLimits { time, memory }
}

/// `management`: the circuit breaker.
pub(super) fn management(
    cx: &mut Builder<'_>,
    node: &Node,
    identity: &str,
    top_tls: Option<&TlsConfig>,
) -> Option<ManagementConfig> {
    let mut fields = cx.problems.mapping("management", node)?;
    let name = cx
        .read(&mut fields, "name", Problems::nonempty)
        .unwrap_or_else(|| "promrelay".to_string());
    let brokers = cx
        .read(&mut fields, "brokers", nats_urls)
        .unwrap_or_default();
    let logfile = cx.path(&mut fields, "logfile");
    let loglevel = cx
        .read(&mut fields, "loglevel", |problems, key, node| {
            match node.scalar().map(str::to_ascii_lowercase).as_deref() {
                Some("error" | "fatal" | "panic") => Some(LogLevel::Error),
                Some("warn" | "warning") => Some(LogLevel::Warn),
                Some("info") => Some(LogLevel::Info),
                Some("debug" | "trace") => Some(LogLevel::Debug),
                _ => {
                    problems.at(
                        key,
                        node,
                        format!(
                            "{} is not a log level (use error, warn, info or debug)",
                            node.describe()
                        ),
                    );
                    None
                }
            }
        })
        .unwrap_or(LogLevel::Info);
    let auth = match fields.take("auth") {
        Some(node) => management_auth(cx, &fields.key("auth"), node),
        None => ManagementAuth::default(),
    };
    let tls = match fields.take("tls") {
        Some(node) => tls(cx, &fields.key("tls"), node, identity),
        None => top_tls.cloned(),
    };
    let token = cx
        .read(&mut fields, "token", Problems::nonempty)
        .map(Secret::new);
    fields.finish(&mut cx.problems);
    Some(ManagementConfig {
        name,
        brokers,
        logfile,
        loglevel,
        auth,
        tls,
        token,
    })
}

fn management_auth(cx: &mut Builder<'_>, key: &str, node: &Node) -> ManagementAuth {
    let Some(mut fields) = cx.problems.mapping(key, node) else {
        return ManagementAuth::default();
    };
    let full = cx.read(&mut fields, "full", regex_list).unwrap_or_default();
    // `RO` is what the original's Puppet module wrote for `read_only`.
    let read_only = match cx.read(&mut fields, "read_only", regex_list) {
        Some(list) => list,
        None => cx.read(&mut fields, "RO", regex_list).unwrap_or_default(),
    };
    let insecure = cx
        .read(&mut fields, "insecure", Problems::boolean)
        .unwrap_or(false);
    fields.finish(&mut cx.problems);
    ManagementAuth {
        full,
        read_only,
        insecure,
    }
}

/// One regular expression or a list of them (not comma-split: a regex may contain commas).
fn regex_list(problems: &mut Problems, key: &str, node: &Node) -> Option<Vec<String>> {
    let list = if let Some(pattern) = node.scalar() {
        vec![(pattern.to_string(), node.line)]
    } else {
        problems.string_list(key, node)?
    };
    let mut ok = true;
    for (pattern, line) in &list {
        if let Err(error) = regex::Regex::new(pattern) {
            ok = false;
            problems.add(
                key,
                Some(*line),
                format!("{pattern:?} is not a regular expression: {error}"),
            );
        }
    }
    ok.then(|| list.into_iter().map(|(pattern, _)| pattern).collect())
}
