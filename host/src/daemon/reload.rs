//! SIGHUP and `/-/reload`: a new config applied to the running daemon, or refused whole.

use super::*;

pub(super) fn reload_event(outcome: &Result<String, String>) -> lifecycle::Event {
    match outcome {
        Ok(message) => lifecycle::Event::Reload {
            ok: true,
            message: message.clone(),
        },
        Err(message) => lifecycle::Event::Reload {
            ok: false,
            message: message.clone(),
        },
    }
}

/// Re-reads the config and applies what can change at run time (jobs and targets). An invalid
/// config keeps the old one and reports every problem.
pub(super) async fn reload(
    path: &Path,
    current: &mut Config,
    poller: Option<&mut Scrapers>,
    discovery: Option<&mut Discovery>,
    filters: Option<&Chains>,
    receiver_sources: Option<&tokio::sync::watch::Sender<Vec<crate::wire::SourceSettings>>>,
    web: Option<&crate::web::Handle>,
) -> Result<String, String> {
    let new = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, keeping the running config:\n{e:#}");
            return Err(format!("{e:#}"));
        }
    };
    let mut notes = Vec::new();
    // The web config is re-read from the file the port started with (a changed path needs a
    // restart); a file that no longer loads keeps the running web settings and fails the
    // reload, as an invalid config does.
    if let Some(web) = web {
        if new.web_config_file.as_deref() != Some(web.path()) {
            notes.push("web_config_file changes need a restart".to_owned());
        } else if let Err(e) = web.reload() {
            tracing::error!("reload failed, keeping the running config: {e:#}");
            return Err(format!("{e:#}"));
        } else {
            notes.push("web_config_file re-read".to_owned());
        }
    } else if new.web_config_file.is_some() && new.monitor_port.is_some() {
        notes.push("web_config_file changes need a restart".to_owned());
    }
    // Built before anything changes: a missing certificate or password file keeps the running
    // config, as an invalid config does.
    let clients = match &poller {
        Some(scrapers) => match JobClients::build(&new, scrapers.clients.generation + 1, web) {
            Ok(clients) => Some(clients),
            Err(e) => {
                tracing::error!("reload failed, keeping the running config: {e:#}");
                return Err(format!("{e:#}"));
            }
        },
        None => None,
    };
    if new.poller_stream != current.poller_stream
        || !same_but_sources(&new.receiver_stream, &current.receiver_stream)
        || new.push_gateway != current.push_gateway
        || new.monitor_port != current.monitor_port
    {
        notes.push("stream, push_gateway and monitor_port changes need a restart".to_owned());
        tracing::warn!("reload: stream, push_gateway and monitor_port changes need a restart");
    }
    if let (Some(sender), Some(stream)) = (receiver_sources, new.receiver_stream.as_ref()) {
        if let Some(note) = sources_reload(sender, stream, current.receiver_stream.as_ref()) {
            notes.push(note);
        }
    }
    if new.spool != current.spool || new.outage_buffer != current.outage_buffer {
        notes.push("spool_dir, spool_sync and outage_buffer changes need a restart".to_owned());
        tracing::warn!("reload: spool_dir, spool_sync and outage_buffer changes need a restart");
    }
    if let Some(chains) = filters {
        // A filter that fails to load keeps the old chains (and the old config) in force.
        match chains.reload(ChainPlan::from_config(&new)).await {
            Err(e) => return Err(format!("{e}; the running config stays in force")),
            Ok(report) if report.swapped => notes.push("filters reloaded".to_owned()),
            Ok(_) => notes.push("filters unchanged".to_owned()),
        }
    }
    if let Some(scrapers) = poller {
        if let Some(clients) = clients {
            scrapers.clients = clients;
        }
        let specs = match discovery {
            Some(files) => {
                files.apply(&new);
                target_specs_with(&new, files.targets())
            }
            None => target_specs(&new),
        };
        let (started, stopped) = scrapers.apply(specs);
        notes.push(format!("targets: {started} started, {stopped} stopped"));
    }
    *current = new;
    let text = format!("reloaded: {}", notes.join("; "));
    tracing::info!("{text}");
    Ok(text)
}

/// Whether two `receiver_stream` sections differ at most in `sources` (which a reload applies).
fn same_but_sources(
    new: &Option<config::StreamConfig>,
    old: &Option<config::StreamConfig>,
) -> bool {
    let strip = |section: &Option<config::StreamConfig>| {
        section.clone().map(|mut section| {
            section.sources.clear();
            section
        })
    };
    strip(new) == strip(old)
}

/// Hands a changed `receiver_stream.sources` to the receiver, which adds the new ones to the hub
/// stream; a source removed from the config stays on the stream (said in the note).
fn sources_reload(
    sender: &tokio::sync::watch::Sender<Vec<crate::wire::SourceSettings>>,
    new: &config::StreamConfig,
    old: Option<&config::StreamConfig>,
) -> Option<String> {
    let old_sources = old.map(|old| old.sources.as_slice()).unwrap_or_default();
    if new.sources == old_sources {
        return None;
    }
    let added: Vec<String> = new
        .sources
        .iter()
        .filter(|source| !old_sources.contains(source))
        .map(|source| format!("{} (domain {})", source.stream, source.domain))
        .collect();
    let removed: Vec<String> = old_sources
        .iter()
        .filter(|source| !new.sources.contains(source))
        .map(|source| source.stream.clone())
        .collect();
    sender.send_replace(crate::wire::StreamSettings::from_config(new).sources);
    let mut note = format!("hub stream sources: adding {}", added.join(", "));
    if !removed.is_empty() {
        note.push_str(&format!(
            "; {} left the config but stay sources of the stream (remove them with nats stream \
             edit if that is meant)",
            removed.join(", ")
        ));
        tracing::warn!("reload: {note}");
    }
    Some(note)
}
