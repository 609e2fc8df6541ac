//! Multi-server topologies from `docs/topologies.md`: a hub with leaf sites (each its own
//! JetStream domain, connecting out to the hub's leaf listener) and a 3-node cluster.
//!
//! The nats-server configs are the ones the document shows: [`doc_config`] reads the block
//! marked `<!-- nats-server: NAME -->` and the harness replaces only the loopback addresses, the
//! store directory and the server name (each replaced text must occur, so a document that drifts
//! from what the harness expects fails here instead of testing something else).
//!
//! **Invariant:** every server listens on free 127.0.0.1 ports with its own temp directory and
//! is stopped by PID (the [`NatsServer`] guards).

use std::time::Duration;

use crate::nats::NatsServer;
use crate::{free_port, http, poll_until, poll_until_ok};

/// How long a topology may take to come up (leaf connections, cluster elections).
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// The text of the config block `name` in `docs/topologies.md`.
pub fn doc_config(name: &str) -> String {
    let path = crate::relay::workspace_root().join("docs/topologies.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let marker = format!("<!-- nats-server: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{} has no block {marker}", path.display()))
        .1;
    let body = after
        .split_once("```text\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("the block {marker} is not followed by a ```text fence"))
        .0;
    body.to_string()
}

/// Replaces each `(from, to)` in order, panicking when `from` does not occur.
fn substitute(mut text: String, replacements: &[(&str, String)]) -> String {
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "docs/topologies.md changed: {from:?} is not in\n{text}"
        );
        text = text.replace(from, to);
    }
    text
}

/// Spawns one server from a documented config, its addresses replaced by `(from, to)` pairs
/// computed from the server's fresh ports and store.
fn spawn_documented(
    block: &str,
    replace: impl FnOnce(u16, u16, &str) -> Vec<(&'static str, String)>,
) -> NatsServer {
    let dir = NatsServer::temp_dir();
    let store = NatsServer::store_dir_in(dir.path()).display().to_string();
    let (port, monitor_port) = (free_port(), free_port());
    let config = substitute(doc_config(block), &replace(port, monitor_port, &store));
    NatsServer::spawn_in(dir, port, monitor_port, &config)
}

/// A hub (JetStream domain `hub`, a leaf listener) and leaf sites `site1`, `site2`, … (each its
/// own domain) connected out to it.
#[derive(Debug)]
pub struct LeafTopology {
    pub hub: NatsServer,
    pub sites: Vec<NatsServer>,
    leaf_port: u16,
}

impl LeafTopology {
    /// The hub and `sites` leaf sites, each healthy and every leaf connected.
    pub fn start(sites: usize) -> LeafTopology {
        let leaf_port = free_port();
        let mut hub = spawn_documented("hub", |port, monitor, store| {
            vec![
                ("/var/lib/nats/hub", store.to_string()),
                ("127.0.0.1:4222", format!("127.0.0.1:{port}")),
                ("127.0.0.1:8222", format!("127.0.0.1:{monitor}")),
                ("127.0.0.1:7422", format!("127.0.0.1:{leaf_port}")),
            ]
        });
        hub.wait_healthy();
        let mut topology = LeafTopology {
            hub,
            sites: Vec::new(),
            leaf_port,
        };
        for _ in 0..sites {
            topology.add_site();
        }
        topology
    }

    /// Starts the next site (`site<N>`), waits until it is healthy and connected to the hub;
    /// returns its index.
    pub fn add_site(&mut self) -> usize {
        let name = format!("site{}", self.sites.len() + 1);
        let leaf_port = self.leaf_port;
        let mut site = spawn_documented("site1", |port, monitor, store| {
            vec![
                ("/var/lib/nats/site1", store.to_string()),
                ("site1", name.clone()),
                ("127.0.0.1:4223", format!("127.0.0.1:{port}")),
                ("127.0.0.1:8223", format!("127.0.0.1:{monitor}")),
                ("127.0.0.1:7422", format!("127.0.0.1:{leaf_port}")),
            ]
        });
        site.wait_healthy();
        self.sites.push(site);
        self.wait_leaves(self.sites.len());
        self.sites.len() - 1
    }

    /// The JetStream domain of site `index` (`site1` for 0).
    pub fn site_domain(index: usize) -> String {
        format!("site{}", index + 1)
    }

    /// Waits until the hub counts `count` leaf connections (`/leafz`).
    pub fn wait_leaves(&self, count: usize) {
        let url = format!("{}/leafz", self.hub.monitor_url());
        poll_until_ok(
            FORM_TIMEOUT,
            &format!("{count} leaf nodes connected to the hub"),
            || {
                let body = http::get_ok(&url)?;
                let leafz: serde_json::Value = serde_json::from_str(&body)?;
                let leafs = leafz["leafnodes"].as_u64().unwrap_or(0);
                if leafs as usize == count {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("{leafs} leaf nodes connected"))
                }
            },
        );
    }
}

/// The stream `name` in a `/jsz?streams=true` answer.
pub fn jsz_stream(jsz: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|stream| stream["name"] == name)
        .cloned()
}

/// Three nats-servers `n1`–`n3` in one JetStream cluster, from the documented config.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    /// Starts the three nodes and waits until each is healthy (a JetStream meta leader elected).
    pub fn start() -> Cluster {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|index| {
                let routes = routes.clone();
                spawn_documented("n1", move |port, monitor, store| {
                    vec![
                        ("/var/lib/nats/n1", store.to_string()),
                        ("server_name: n1", format!("server_name: n{}", index + 1)),
                        ("127.0.0.1:4222", format!("127.0.0.1:{port}")),
                        ("127.0.0.1:8222", format!("127.0.0.1:{monitor}")),
                        // Routes first (they name every node), then this node's own listener.
                        (
                            "nats-route://127.0.0.1:6222",
                            format!("@route1@:{}", routes[0]),
                        ),
                        (
                            "nats-route://127.0.0.1:6223",
                            format!("@route2@:{}", routes[1]),
                        ),
                        (
                            "nats-route://127.0.0.1:6224",
                            format!("@route3@:{}", routes[2]),
                        ),
                        ("127.0.0.1:6222", format!("127.0.0.1:{}", routes[index])),
                        ("@route1@", "nats-route://127.0.0.1".to_string()),
                        ("@route2@", "nats-route://127.0.0.1".to_string()),
                        ("@route3@", "nats-route://127.0.0.1".to_string()),
                    ]
                })
            })
            .collect();
        let mut cluster = Cluster { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// Waits until every running node answers `/healthz` (streams caught up included).
    pub fn wait_healthy(&mut self) {
        for node in &mut self.nodes {
            node.wait_healthy_within(FORM_TIMEOUT);
        }
    }

    /// The client URLs of all nodes, comma-separated (the config's `urls`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node leading stream `name`, as a running node's `/jsz` reports it once a
    /// leader is elected and every replica is current.
    pub fn stream_leader(&self, name: &str, skip: Option<usize>) -> usize {
        poll_until(
            FORM_TIMEOUT,
            &format!("a leader of stream {name} with current replicas"),
            || {
                self.nodes
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| Some(*index) != skip)
                    .find_map(|(_, node)| {
                        let jsz = node.try_jsz().ok()?;
                        let stream = jsz_stream(&jsz, name)?;
                        let leader = stream["cluster"]["leader"].as_str()?;
                        let index = leader.strip_prefix('n')?.parse::<usize>().ok()? - 1;
                        let replicas = stream["cluster"]["replicas"].as_array()?;
                        let current = replicas
                            .iter()
                            .filter(|replica| replica["current"] == true)
                            .count();
                        (Some(index) != skip && current >= 1).then_some(index)
                    })
            },
        )
    }

    /// SIGKILLs the leader of stream `name`; returns its index.
    pub fn kill_stream_leader(&mut self, name: &str) -> usize {
        let leader = self.stream_leader(name, None);
        self.nodes[leader].kill9();
        leader
    }

    /// Stops every node (SIGTERM), then starts all three again on their ports and stores and
    /// waits until each is healthy.
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        for node in &mut self.nodes {
            node.respawn();
        }
        self.wait_healthy();
    }
}
