//! Two relays in one process (issue 8, "no hidden globals"): `promrelay::daemon::run` twice at
//! once, with different configs, keeps apart what each one is. Each relays through its own
//! nats-server, one requiring a token, the other a user and password; each runs its own filters
//! and reports on its own server.
//!
//! Both daemons are polled by one task (`tokio::join!`), so the first one to start has set
//! everything up before the second one does, and connects and loads its filters after: any
//! process-wide security, lifecycle queue or filter status would be the second one's by then,
//! and the first one would connect with the wrong credentials, report its filters on the other's
//! server and show the other's filters on its status page.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use promrelay::daemon::{self, Mode};
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, http, poll_until, Behaviour, NatsServer, Pushgateway, RelayConfig, TargetServer,
};
use tokio_util::sync::CancellationToken;

/// Long enough for two debug-built relays to start and relay on a loaded two-core machine.
const ARRIVAL: Duration = Duration::from_secs(90);

/// Every lifecycle event one watcher saw, as JSON.
type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// The daemons whose run ended: (identity, its result, the error as text).
type Ended = Arc<Mutex<Vec<(&'static str, Result<(), String>)>>>;

/// One relay of the two: its config and what it is expected to be.
struct Site {
    identity: &'static str,
    job: &'static str,
    /// `(filter name, module)` of its global chain, in order.
    filters: Vec<(&'static str, &'static str)>,
    nats: NatsServer,
    /// The stream sections' credentials (YAML lines, indented by two).
    credentials: &'static str,
    connect: async_nats::ConnectOptions,
    target: TargetServer,
    monitor_port: u16,
}

impl Site {
    fn config_yaml(&self, pushgateway: &Pushgateway) -> String {
        let wat = promrelay_tests::relay::workspace_root().join("tests/wat");
        let filters: String = self
            .filters
            .iter()
            .map(|(name, module)| {
                format!(
                    "  - name: {name}\n    module: {:?}\n    on_error: pass\n",
                    wat.join(module).display().to_string()
                )
            })
            .collect();
        let mut config = RelayConfig::pipeline(&self.nats.url(), &pushgateway.url())
            .job(self.job, &[("app1", &self.target.url())])
            .monitor_port(self.monitor_port)
            .extra(&format!("filters:\n{filters}"));
        config.identity = Some(self.identity.into());
        let yaml = config.to_yaml();
        let mut yaml = yaml.replacen(
            "poller_stream:\n",
            &format!("poller_stream:\n{}", self.credentials),
            1,
        );
        yaml = yaml.replacen(
            "receiver_stream:\n",
            &format!("receiver_stream:\n{}", self.credentials),
            1,
        );
        yaml
    }

    /// The names of the filters its monitor port reports.
    fn reported_filters(&self) -> Vec<String> {
        let url = format!("http://127.0.0.1:{}/api/v1/filters", self.monitor_port);
        let body = http::get_ok(&url).unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        let status: serde_json::Value = serde_json::from_str(&body).expect("filter status JSON");
        status["filters"]
            .as_array()
            .unwrap_or_else(|| panic!("no filter list in {status}"))
            .iter()
            .map(|filter| filter["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn own_filters(&self) -> Vec<String> {
        self.filters
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect()
    }
}

/// Subscribes to the lifecycle events on `site`'s server (with its credentials) and records them.
fn watch_events(runtime: &tokio::runtime::Runtime, site: &Site) -> Events {
    let seen: Events = Arc::default();
    let client = runtime
        .block_on(site.connect.clone().connect(site.nats.url()))
        .expect("the watcher connects with the site's credentials");
    let mut subscriber = runtime
        .block_on(client.subscribe("choria.lifecycle.event.>"))
        .expect("subscribe to lifecycle events");
    runtime
        .block_on(client.flush())
        .expect("the subscription reaches the server");
    let recorded = seen.clone();
    runtime.spawn(async move {
        let _client = client;
        while let Some(message) = subscriber.next().await {
            let mut event: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("a lifecycle event is JSON");
            event["subject"] = serde_json::json!(message.subject.to_string());
            recorded.lock().expect("not poisoned").push(event);
        }
    });
    seen
}

fn events_of(seen: &Events, kind: &str) -> Vec<serde_json::Value> {
    seen.lock()
        .expect("not poisoned")
        .iter()
        .filter(|event| event["protocol"] == format!("choria:lifecycle:{kind}:1"))
        .cloned()
        .collect()
}

/// Writes `yaml` to `dir` and loads it as the daemon would.
fn load(dir: &Path, name: &str, yaml: &str) -> (std::path::PathBuf, promrelay::config::Config) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write the config");
    let config = daemon::load_config(&path).unwrap_or_else(|e| panic!("{e:#}\nin:\n{yaml}"));
    (path, config)
}

#[test]
fn two_daemons_in_one_process_keep_their_security_filters_and_events_apart() {
    promrelay::tls::install_crypto_provider();
    let pushgateway = Pushgateway::start();
    let alpha = Site {
        identity: "alpha-site",
        job: "alpha_app",
        filters: vec![("alpha", "pass.wat"), ("alpha_trapper", "trap_process.wat")],
        nats: NatsServer::start_with_config("authorization {\n  token: \"alpha-t0ken\"\n}\n"),
        credentials: "  token: \"alpha-t0ken\"\n",
        connect: async_nats::ConnectOptions::with_token("alpha-t0ken".into()),
        target: TargetServer::start(Behaviour::Fixed(SMALL_BODY.into())),
        monitor_port: free_port(),
    };
    let beta = Site {
        identity: "beta-site",
        job: "beta_app",
        filters: vec![("beta", "pass.wat")],
        nats: NatsServer::start_with_config(
            "authorization {\n  user: beta\n  password: \"beta-pw\"\n}\n",
        ),
        credentials: "  user: beta\n  password: \"beta-pw\"\n",
        connect: async_nats::ConnectOptions::with_user_and_password(
            "beta".into(),
            "beta-pw".into(),
        ),
        target: TargetServer::start(Behaviour::Fixed(SMALL_BODY.into())),
        monitor_port: free_port(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime for the daemons");
    let alpha_events = watch_events(&runtime, &alpha);
    let beta_events = watch_events(&runtime, &beta);

    let dir = tempfile::tempdir().expect("temp dir for the configs");
    let (alpha_path, alpha_config) = load(dir.path(), "alpha", &alpha.config_yaml(&pushgateway));
    let (beta_path, beta_config) = load(dir.path(), "beta", &beta.config_yaml(&pushgateway));
    let alpha_stop = CancellationToken::new();
    let beta_stop = CancellationToken::new();
    let ended: Ended = Arc::default();
    let both = {
        let (alpha_stop, beta_stop, ended) = (alpha_stop.clone(), beta_stop.clone(), ended.clone());
        let report = move |identity: &'static str, result: anyhow::Result<()>| {
            ended
                .lock()
                .expect("not poisoned")
                .push((identity, result.map_err(|e| format!("{e:#}"))));
        };
        runtime.spawn(async move {
            let alpha = async {
                let result = daemon::run(alpha_path, alpha_config, Mode::Auto, alpha_stop).await;
                report("alpha-site", result);
            };
            let beta = async {
                let result = daemon::run(beta_path, beta_config, Mode::Auto, beta_stop).await;
                report("beta-site", result);
            };
            tokio::join!(alpha, beta);
        })
    };
    let running = || {
        let ended = ended.lock().expect("not poisoned");
        assert!(ended.is_empty(), "a daemon stopped early: {ended:?}");
    };

    // Each one's credentials: both relay end to end, each through its own server.
    for site in [&alpha, &beta] {
        poll_until(
            ARRIVAL,
            &format!("up 1 of {} in the Pushgateway", site.job),
            || {
                running();
                pushgateway
                    .pushed_series_for(site.job)
                    .iter()
                    .any(|s| {
                        s.name == "up"
                            && s.label("publisher") == Some(site.identity)
                            && s.value == 1.0
                    })
                    .then_some(())
            },
        );
    }

    // Each one's filter status: its own filters, none of the other's.
    for site in [&alpha, &beta] {
        let reported = poll_until(ARRIVAL, &format!("{}'s filters", site.identity), || {
            running();
            let reported = site.reported_filters();
            (!reported.is_empty()).then_some(reported)
        });
        assert_eq!(reported, site.own_filters(), "filters of {}", site.identity);
    }

    // Each one's lifecycle events, on its own server with its own identity: alpha's trapping
    // filter fails on alpha's server only.
    let failure = poll_until(ARRIVAL, "alpha's filter_failure event", || {
        running();
        events_of(&alpha_events, "filter_failure")
            .into_iter()
            .next()
    });
    assert_eq!(failure["filter"], "alpha_trapper", "{failure}");
    assert_eq!(failure["identity"], "alpha-site", "{failure}");
    for (site, seen) in [(&alpha, &alpha_events), (&beta, &beta_events)] {
        let loaded: Vec<String> = events_of(seen, "filter_load")
            .iter()
            .map(|event| event["filter"].as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: Vec<String> = site
            .own_filters()
            .iter()
            .map(|name| format!("global/{name}"))
            .collect();
        assert_eq!(
            loaded, expected,
            "filter_load events on {}'s server",
            site.identity
        );
    }
    // Beta scraped and filtered a few times more since: its filter never failed.
    let scraped = beta.target.requests();
    poll_until(ARRIVAL, "three more scrapes of beta's target", || {
        running();
        (beta.target.requests() >= scraped + 3).then_some(())
    });
    assert_eq!(
        events_of(&beta_events, "filter_failure"),
        Vec::<serde_json::Value>::new(),
        "filter_failure events on beta's server"
    );
    for (site, seen) in [(&alpha, &alpha_events), (&beta, &beta_events)] {
        let strangers: Vec<serde_json::Value> = seen
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|event| event["identity"] != site.identity)
            .cloned()
            .collect();
        assert!(
            strangers.is_empty(),
            "events of another relay on {}'s server: {strangers:#?}",
            site.identity
        );
    }

    // Stopping one leaves the other running and relaying.
    alpha_stop.cancel();
    poll_until(ARRIVAL, "alpha's daemon to stop", || {
        let ended = ended.lock().expect("not poisoned");
        ended
            .iter()
            .find(|(identity, _)| *identity == "alpha-site")
            .cloned()
    })
    .1
    .unwrap_or_else(|e| panic!("alpha's daemon failed: {e}"));
    poll_until(ARRIVAL, "alpha's shutdown event", || {
        events_of(&alpha_events, "shutdown").into_iter().next()
    });
    let scraped = beta.target.requests();
    poll_until(ARRIVAL, "beta scraping on", || {
        (beta.target.requests() >= scraped + 2).then_some(())
    });
    assert_eq!(beta.reported_filters(), beta.own_filters());
    assert_eq!(events_of(&beta_events, "shutdown").len(), 0);

    beta_stop.cancel();
    runtime
        .block_on(both)
        .expect("the daemons' task does not panic");
    let ended = ended.lock().expect("not poisoned").clone();
    assert_eq!(
        ended,
        vec![("alpha-site", Ok(())), ("beta-site", Ok(()))],
        "how the daemons ended"
    );
    let shutdown = poll_until(ARRIVAL, "beta's shutdown event", || {
        events_of(&beta_events, "shutdown").into_iter().next()
    });
    assert_eq!(shutdown["identity"], "beta-site");
}
