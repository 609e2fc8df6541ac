//! `promrelay-fuzz [--seconds N] [--seed N] [--findings DIR] [TARGET…]`: fuzzes each target (all
//! when none is named) for N seconds; exits 1 at the first finding, whose input it writes to the
//! findings directory. `promrelay-fuzz --replay FILE TARGET` runs one input (a regression check).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use promrelay_fuzz::engine::{self, Options};
use promrelay_fuzz::targets;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut options = Options::default();
    let mut findings = promrelay_fuzz::seeds::root().join("fuzz/findings");
    let mut names = Vec::new();
    let mut replay: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("promrelay-fuzz: {arg} needs {what}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seconds" => options.duration = Duration::from_secs(number(&value("a number"))),
            "--seed" => options.seed = number(&value("a number")),
            "--runs" => options.runs = Some(number(&value("a number"))),
            "--hang-seconds" => {
                options.hang_limit = Duration::from_secs(number(&value("a number")))
            }
            "--findings" => findings = PathBuf::from(value("a directory")),
            "--replay" => replay = Some(PathBuf::from(value("a file"))),
            "-h" | "--help" => {
                println!(
                    "usage: promrelay-fuzz [--seconds N] [--seed N] [--runs N] [--hang-seconds N] \
                     [--findings DIR] [TARGET…]\n       promrelay-fuzz --replay FILE TARGET\n\
                     targets: text batch wire config (all when none is named)"
                );
                return ExitCode::SUCCESS;
            }
            name => names.push(name.to_string()),
        }
    }
    let all = targets::all();
    let chosen: Vec<&dyn engine::Target> = if names.is_empty() {
        all.iter().map(|t| t.as_ref()).collect()
    } else {
        let mut chosen = Vec::new();
        for name in &names {
            match all.iter().find(|t| t.name() == name) {
                Some(target) => chosen.push(target.as_ref()),
                None => {
                    eprintln!("promrelay-fuzz: no target {name:?} (text, batch, wire, config)");
                    return ExitCode::from(2);
                }
            }
        }
        chosen
    };
    if let Some(file) = replay {
        let input = match std::fs::read(&file) {
            Ok(input) => input,
            Err(error) => {
                eprintln!("promrelay-fuzz: reading {}: {error}", file.display());
                return ExitCode::from(2);
            }
        };
        for target in chosen {
            println!("{}: {:?}", target.name(), target.run(&input));
        }
        return ExitCode::SUCCESS;
    }
    std::fs::create_dir_all(&findings).ok();
    for target in chosen {
        options.hang_file = Some(findings.join(format!("{}-hang", target.name())));
        match promrelay_fuzz::run(target, &options, Some(&findings)) {
            Ok(report) => println!("{report}"),
            Err((finding, written)) => {
                eprintln!("{finding}");
                if let Some(path) = written {
                    eprintln!("input written to {}", path.display());
                }
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn number(text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| {
        eprintln!("promrelay-fuzz: {text:?} is not a number");
        std::process::exit(2)
    })
}
