//! Inputs shared by the benches (each bench is its own crate and includes this module).

use std::fmt::Write;

/// 100 000 series: 500 families of 200 series, five labels each (instance, job, method, path,
/// code), plus job and instance as the relay adds them.
pub fn synthetic_scrape() -> String {
    let mut text = String::with_capacity(24 << 20);
    for family in 0..500 {
        let name = format!("service_requests_{family}_total");
        let _ = writeln!(
            text,
            "# HELP {name} Requests served, synthetic family {family}."
        );
        let _ = writeln!(text, "# TYPE {name} counter");
        for series in 0..200 {
            let _ = writeln!(
                text,
                "{name}{{code=\"{}\",instance=\"web-{:02}:8080\",job=\"web\",method=\"{}\",path=\"/api/{}\"}} {}",
                [200, 404, 500, 503][series % 4],
                series % 20,
                ["GET", "POST", "PUT"][series % 3],
                series / 12,
                1000 + series * 37 + family
            );
        }
    }
    text
}
