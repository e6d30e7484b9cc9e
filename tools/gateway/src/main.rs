//! `cargo run -p gateway -- [options]`: the deployed shape on 127.0.0.1 (README: Serve the
//! deployed shape locally). Exits non-zero, loudly, when anything of the deployment cannot start.

use std::path::PathBuf;
use std::time::Duration;

use gateway::gateway::{run, Options};

const USAGE: &str = "\
usage: gateway [options]
  --template PATH      SAM template (default infra/template.yaml)
  --overrides PATH     local values the template cannot resolve (default
                       tools/gateway/local.yaml); ${NAME} and ${NAME:-default} read the environment
  --param NAME=VALUE   a template parameter (over the overrides file); repeatable
  --binaries DIR       function binaries as DIR/<binary>/bootstrap (default: each CodeUri's
                       target/lambda, what `cargo lambda build --release` writes)
  --events DIR         sample events giving the route probe paths (default: ../events)
  --port N             HTTP port on 127.0.0.1 (default $PORT, else 3000; 0 picks one)
  --instances N        warm processes per function (default 2)
  --init-timeout SECS  longest init per process (default 10, Lambda's)
  --logs DIR           one log file per function in DIR (default: this terminal)
  --no-probe           skip the start-up route probe
  --check              start everything, probe the routes, print cold starts, stop";

fn parse() -> Result<Options, String> {
    let mut options = Options::default();
    if let Ok(port) = std::env::var("PORT") {
        options.port = port
            .parse()
            .map_err(|_| format!("PORT={port}: not a port"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--template" => options.template = PathBuf::from(value("--template")?),
            "--overrides" => options.overrides = Some(PathBuf::from(value("--overrides")?)),
            "--binaries" => options.binaries = Some(PathBuf::from(value("--binaries")?)),
            "--events" => options.events = Some(PathBuf::from(value("--events")?)),
            "--logs" => options.logs = Some(PathBuf::from(value("--logs")?)),
            "--param" => {
                let pair = value("--param")?;
                let (name, val) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--param {pair}: expected NAME=VALUE"))?;
                options.params.insert(name.to_owned(), val.to_owned());
            }
            "--port" => {
                options.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port: not a port".to_owned())?
            }
            "--instances" => {
                options.instances = value("--instances")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--instances: a positive number")?
            }
            "--init-timeout" => {
                options.init_timeout = Duration::from_secs(
                    value("--init-timeout")?
                        .parse()
                        .map_err(|_| "--init-timeout: seconds".to_owned())?,
                )
            }
            "--no-probe" => options.probe = false,
            "--check" => options.check = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() {
    let result = match parse() {
        Ok(options) => run(options).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        eprintln!("gateway: FAILED\n{error}");
        std::process::exit(1);
    }
}
