//! Sections that name where data goes: the NATS `poller_stream` and `receiver_stream` (with
//! their credentials), the `push_gateway` and the `remote_write` endpoints.

use super::build::Builder;
use super::reader::{Fields, Problems};
use super::types::*;
use super::values;
use super::yaml::Node;

/// A `poller_stream` or `receiver_stream` section.
pub(super) fn stream(
    cx: &mut Builder<'_>,
    key: &str,
    node: &Node,
    identity: &str,
    top_tls: Option<&TlsConfig>,
) -> Option<StreamConfig> {
    let mut fields = cx.problems.mapping(key, node)?;
    let stream = cx.required(
        &mut fields,
        "cluster_id",
        "the JetStream stream name",
        |problems, key, node| {
            let name = problems.nonempty(key, node)?;
            match values::check_stream_name(&name) {
                Ok(()) => Some(name),
                Err(reason) => {
                    problems.at(key, node, reason);
                    None
                }
            }
        },
    );
    let urls = cx.required(
        &mut fields,
        "urls",
        "for example nats://127.0.0.1:4222",
        nats_urls,
    );
    let topic = cx
        .read(&mut fields, "topic", |problems, key, node| {
            let topic = problems.nonempty(key, node)?;
            match values::check_subject_prefix(&topic) {
                Ok(()) => Some(topic),
                Err(reason) => {
                    problems.at(key, node, reason);
                    None
                }
            }
        })
        .unwrap_or_else(|| DEFAULT_TOPIC.to_string());
    let client_id = cx
        .read(&mut fields, "client_id", |problems, key, node| {
            let name = problems.string(key, node)?.trim().to_string();
            if name.is_empty() {
                return Some(name);
            }
            match values::check_stream_name(&name) {
                Ok(()) => Some(name),
                Err(reason) => {
                    problems.at(key, node, reason);
                    None
                }
            }
        })
        .unwrap_or_default();
    let retention = cx
        .read(&mut fields, "retention", Problems::positive_duration)
        .unwrap_or(DEFAULT_RETENTION);
    let storage = cx
        .read(&mut fields, "storage", |problems, key, node| {
            match node.scalar().map(str::to_ascii_lowercase).as_deref() {
                Some("file") => Some(Storage::File),
                Some("memory") => Some(Storage::Memory),
                _ => {
                    problems.at(
                        key,
                        node,
                        format!("{} is not a storage (use file or memory)", node.describe()),
                    );
                    None
                }
            }
        })
        .unwrap_or(Storage::File);
    let replicas = cx
        .read(&mut fields, "replicas", |problems, key, node| {
            problems.integer(key, node, 1, 5)
        })
        .and_then(|replicas| usize::try_from(replicas).ok())
        .unwrap_or(1);
    let tls = match fields.take("tls") {
        Some(node) => super::sections::tls(cx, &fields.key("tls"), node, identity),
        None => top_tls.cloned(),
    };
    let auth = nats_auth(cx, &mut fields);
    let domain = cx.read(&mut fields, "domain", domain_name);
    let sources_line = fields.key_line("sources");
    let sources = match fields.take("sources") {
        Some(node) if key == "receiver_stream" => sources(cx, &fields.key("sources"), node),
        Some(node) => {
            cx.problems.at(
                &fields.key("sources"),
                node,
                "sources belongs in receiver_stream: the hub's receiver sources the site \
                 streams; a poller only publishes to its own stream (set its domain instead)",
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let sources_key = fields.key("sources");
    let ack_wait = only_in(
        cx,
        &mut fields,
        key,
        RECEIVER_ONLY,
        "ack_wait",
        Problems::positive_duration,
    )
    .unwrap_or(DEFAULT_ACK_WAIT);
    let shared_order = only_in(
        cx,
        &mut fields,
        key,
        RECEIVER_ONLY,
        "shared_order",
        Problems::boolean,
    )
    .unwrap_or(false);
    if shared_order && client_id.is_empty() {
        cx.problems.add(
            &fields.key("shared_order"),
            fields.key_line("shared_order"),
            "shared_order needs client_id: receivers share work only on one named durable \
             consumer (set the same client_id in every receiver's config)",
        );
    }
    let format =
        only_in(cx, &mut fields, key, POLLER_ONLY, "format", wire_format).unwrap_or_default();
    fields.finish(&mut cx.problems);
    check_sources(
        cx,
        &sources_key,
        sources_line,
        &sources,
        domain.as_deref(),
        stream.as_deref(),
    );
    Some(StreamConfig {
        stream: stream?,
        urls: urls?,
        topic,
        client_id,
        retention,
        storage,
        replicas,
        tls,
        auth,
        domain,
        sources,
        ack_wait,
        shared_order,
        format,
    })
}

/// Where a key belongs and why: a key of only one stream section.
type Home = (&'static str, &'static str);
/// Keys only a `poller_stream` has.
const POLLER_ONLY: Home = (
    "poller_stream",
    "it sets what the poller writes (a receiver reads every format)",
);
/// Keys only a `receiver_stream` has.
const RECEIVER_ONLY: Home = ("receiver_stream", "it sets the receivers' durable consumer");

/// Reads `key` in its home section; in the other section it is an error saying where it
/// belongs and why.
fn only_in<'a, T>(
    cx: &mut Builder<'_>,
    fields: &mut Fields<'a>,
    section: &str,
    (home, why): Home,
    key: &str,
    read: impl FnOnce(&mut Problems, &str, &'a Node) -> Option<T>,
) -> Option<T> {
    if section == home {
        return cx.read(fields, key, read);
    }
    let node = fields.take(key)?;
    cx.problems.at(
        &fields.key(key),
        node,
        format!("{key} belongs in {home}: {why}"),
    );
    None
}

/// `batch` or `text`.
fn wire_format(problems: &mut Problems, key: &str, node: &Node) -> Option<crate::wire::WireFormat> {
    match node.scalar().map(str::to_ascii_lowercase).as_deref() {
        Some("batch") => Some(crate::wire::WireFormat::Batch),
        Some("text") => Some(crate::wire::WireFormat::Text),
        _ => {
            problems.at(
                key,
                node,
                format!(
                    "{} is not a format (use batch, the default, or text for receivers older \
                     than promrelay's batch format)",
                    node.describe()
                ),
            );
            None
        }
    }
}

/// The mistakes of a hub's `sources` that only show beside its own `domain` and name.
fn check_sources(
    cx: &mut Builder<'_>,
    key: &str,
    line: Option<usize>,
    sources: &[StreamSource],
    hub_domain: Option<&str>,
    hub_stream: Option<&str>,
) {
    if sources.is_empty() {
        return;
    }
    let Some(hub_domain) = hub_domain else {
        cx.problems.add(
            key,
            line,
            "sources needs receiver_stream.domain, the hub's JetStream domain (its nats-server's \
             jetstream { domain: ... }): the hub stream is created there and sources each site \
             stream from the site's own domain across the leaf node",
        );
        return;
    };
    for source in sources {
        if source.domain == hub_domain {
            cx.problems.add(
                key,
                line,
                format!(
                    "source {:?} is in domain {:?}, the hub's own: a source here is a site stream \
                     in a leaf site's domain (its poller_stream.domain); a stream of the hub's \
                     domain is consumed directly, not sourced",
                    source.stream, source.domain
                ),
            );
        }
        if Some(source.stream.as_str()) == hub_stream {
            cx.problems.add(
                key,
                line,
                format!(
                    "source {:?} has the hub stream's own name (receiver_stream.cluster_id): give \
                     the hub stream a name of its own (for example PROM_ALL)",
                    source.stream
                ),
            );
        }
    }
}

/// A JetStream domain: it becomes a subject token of `$JS.<domain>.API`.
fn domain_name(problems: &mut Problems, key: &str, node: &Node) -> Option<String> {
    let domain = problems.nonempty(key, node)?;
    match values::check_subject_token(&domain) {
        Ok(()) => Some(domain),
        Err(reason) => {
            problems.at(
                key,
                node,
                format!("{reason}; a JetStream domain is one subject token, as in the server's jetstream {{ domain: ... }}"),
            );
            None
        }
    }
}

/// `receiver_stream.sources`: a list of `{stream, domain}`, each site stream named once.
fn sources(cx: &mut Builder<'_>, key: &str, node: &Node) -> Vec<StreamSource> {
    let Some(items) = cx.problems.sequence(key, node) else {
        return Vec::new();
    };
    let mut list: Vec<StreamSource> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let Some(mut fields) = cx.problems.mapping(&item_key, item) else {
            continue;
        };
        let stream = cx.required(
            &mut fields,
            "stream",
            "the site stream's name (the site poller's poller_stream.cluster_id)",
            |problems, key, node| {
                let name = problems.nonempty(key, node)?;
                match values::check_stream_name(&name) {
                    Ok(()) => Some(name),
                    Err(reason) => {
                        problems.at(key, node, reason);
                        None
                    }
                }
            },
        );
        let domain = cx.required(
            &mut fields,
            "domain",
            "the site's JetStream domain (the site poller's poller_stream.domain): a hub sources \
             a site stream across its leaf node through $JS.<domain>.API",
            domain_name,
        );
        let line = fields.line();
        fields.finish(&mut cx.problems);
        if let (Some(stream), Some(domain)) = (stream, domain) {
            let source = StreamSource { stream, domain };
            if list.contains(&source) {
                cx.problems.add(
                    &item_key,
                    Some(line),
                    format!(
                        "stream {:?} in domain {:?} is listed twice; list each site stream once",
                        source.stream, source.domain
                    ),
                );
            } else {
                list.push(source);
            }
        }
    }
    list
}

/// NATS server URLs: one, a comma-separated string or a list; `nats://` added when no scheme.
pub(super) fn nats_urls(problems: &mut Problems, key: &str, node: &Node) -> Option<Vec<String>> {
    let list = problems.string_list(key, node)?;
    if list.is_empty() {
        problems.at(key, node, "must name at least one NATS server URL");
        return None;
    }
    let mut urls = Vec::new();
    let mut ok = true;
    for (text, line) in list {
        let full = if text.contains("://") {
            text.clone()
        } else {
            format!("nats://{text}")
        };
        match url::Url::parse(&full) {
            Ok(url)
                if matches!(url.scheme(), "nats" | "tls" | "ws" | "wss")
                    && url.host_str().is_some_and(|host| !host.is_empty()) =>
            {
                urls.push(full)
            }
            Ok(_) => {
                ok = false;
                problems.add(
                    key,
                    Some(line),
                    format!("{text:?} is not a NATS URL (use nats://host:4222, tls://, ws:// or wss://)"),
                );
            }
            Err(error) => {
                ok = false;
                problems.add(key, Some(line), format!("{text:?} is not a URL: {error}"));
            }
        }
    }
    ok.then_some(urls)
}

/// NATS credentials of a stream section: at most one method.
fn nats_auth(cx: &mut Builder<'_>, fields: &mut Fields<'_>) -> NatsAuth {
    let user = cx.read(fields, "user", Problems::nonempty);
    let password = cx.read(fields, "password", Problems::string);
    let token = cx.read(fields, "token", Problems::nonempty);
    let nkey = cx.path(fields, "nkey");
    let creds = cx.path(fields, "creds");
    let given: Vec<&str> = [
        (user.is_some() || password.is_some(), "user/password"),
        (token.is_some(), "token"),
        (nkey.is_some(), "nkey"),
        (creds.is_some(), "creds"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| *name)
    .collect();
    if given.len() > 1 {
        cx.problems.add(
            fields.path(),
            Some(fields.line()),
            format!(
                "set only one NATS authentication method, not {}",
                given.join(" and ")
            ),
        );
        return NatsAuth::None;
    }
    match (user, password, token, nkey, creds) {
        (Some(user), Some(password), ..) => NatsAuth::UserPassword {
            user,
            password: Secret::new(password),
        },
        (Some(_), None, ..) => {
            fields.missing(&mut cx.problems, "password", "user needs a password");
            NatsAuth::None
        }
        (None, Some(_), ..) => {
            fields.missing(&mut cx.problems, "user", "password needs a user");
            NatsAuth::None
        }
        (_, _, Some(token), ..) => NatsAuth::Token(Secret::new(token)),
        (_, _, _, Some(nkey), _) => NatsAuth::NkeySeedFile(nkey),
        (_, _, _, _, Some(creds)) => NatsAuth::CredsFile(creds),
        _ => NatsAuth::None,
    }
}

pub(super) fn push_gateway(cx: &mut Builder<'_>, node: &Node) -> Option<PushGatewayConfig> {
    let mut fields = cx.problems.mapping("push_gateway", node)?;
    let url = cx.required(
        &mut fields,
        "url",
        "for example http://127.0.0.1:9091",
        Problems::http_url,
    );
    let publisher_label = cx
        .read(&mut fields, "publisher_label", Problems::boolean)
        .unwrap_or(false);
    let timeout = cx
        .read(&mut fields, "timeout", Problems::positive_duration)
        .unwrap_or(DEFAULT_SINK_TIMEOUT);
    let http = super::sections::http_client(cx, &mut fields);
    fields.finish(&mut cx.problems);
    Some(PushGatewayConfig {
        url: url?,
        publisher_label,
        timeout,
        http,
    })
}

pub(super) fn remote_write(cx: &mut Builder<'_>, node: &Node) -> Vec<RemoteWriteConfig> {
    let Some(items) = cx.problems.sequence("remote_write", node) else {
        return Vec::new();
    };
    let mut list = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("remote_write[{index}]");
        let Some(mut fields) = cx.problems.mapping(&key, item) else {
            continue;
        };
        let url = cx.required(
            &mut fields,
            "url",
            "for example http://127.0.0.1:9090/api/v1/write",
            Problems::http_url,
        );
        let timeout = cx
            .read(&mut fields, "timeout", Problems::positive_duration)
            .unwrap_or(DEFAULT_SINK_TIMEOUT);
        let http = super::sections::http_client(cx, &mut fields);
        fields.finish(&mut cx.problems);
        if let Some(url) = url {
            list.push(RemoteWriteConfig { url, timeout, http });
        }
    }
    list
}
