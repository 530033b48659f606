//! `meshtrace collector`: runs an OpenTelemetry-Collector-style pipeline (being built).

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The collector configuration (OpenTelemetry Collector YAML schema).
    #[arg(long)]
    config: std::path::PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the collector is not built yet ({})", args.config.display())
}
