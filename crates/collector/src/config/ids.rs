//! `type[/name]` component ids and `traces[/name]` pipeline ids.

use std::fmt;
use std::str::FromStr;

/// A component id: its type (which implementation) and an optional name (which instance).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    ty: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn ty(&self) -> &str {
        &self.ty
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl FromStr for ComponentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ty, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if ty.is_empty() || !ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{s}` is not a valid component id: the type must be letters, digits or _"
            ));
        }
        if name.is_some_and(|n| n.is_empty() || n.contains('/')) {
            return Err(format!(
                "`{s}` is not a valid component id: write type or type/name"
            ));
        }
        Ok(Self {
            ty: ty.to_owned(),
            name: name.map(str::to_owned),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.ty),
            None => f.write_str(&self.ty),
        }
    }
}

/// A pipeline id: `traces` or `traces/name` (the only signal meshtrace handles).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineId(pub ComponentId);

impl FromStr for PipelineId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let id: ComponentId = s.parse()?;
        match id.ty() {
            "traces" => Ok(Self(id)),
            "metrics" | "logs" | "profiles" => Err(format!(
                "pipeline `{s}`: only traces pipelines are supported (meshtrace is a tracing system)"
            )),
            other => Err(format!(
                "pipeline `{s}`: unknown signal `{other}` (write traces or traces/NAME)"
            )),
        }
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
