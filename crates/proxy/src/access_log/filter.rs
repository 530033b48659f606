//! Which requests an access log writes (Envoy's access log `filter`): by status
//! (`status_code_filter`), by duration (`duration_filter`), by response flags
//! (`response_flag_filter`: any of the listed, or any flag at all), and `and_filter` /
//! `or_filter` of those. A comparison's `value` is Envoy's runtime value: its `default_value`
//! is the value (its `runtime_key` is accepted and not read: there is no runtime layer here).
//! Errors and slow requests only, say, instead of every request.

use serde::Deserialize;

use super::Entry;

/// One filter: exactly one of its kinds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub status_code_filter: Option<Compared>,
    #[serde(default)]
    pub duration_filter: Option<Compared>,
    #[serde(default)]
    pub response_flag_filter: Option<ResponseFlags>,
    #[serde(default)]
    pub and_filter: Option<Filters>,
    #[serde(default)]
    pub or_filter: Option<Filters>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compared {
    pub comparison: Comparison,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub op: Op,
    pub value: RuntimeValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Op {
    #[serde(rename = "EQ")]
    Eq,
    #[serde(rename = "GE")]
    Ge,
    #[serde(rename = "LE")]
    Le,
    #[serde(rename = "NE")]
    Ne,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeValue {
    pub default_value: u64,
    #[serde(default)]
    pub runtime_key: Option<String>,
}

/// `flags: [UF, URX]`: requests with any of them; no list: requests with any flag.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFlags {
    #[serde(default)]
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    pub filters: Vec<Filter>,
}

/// The response flags the proxy writes, for checking a `response_flag_filter`.
const FLAGS: [&str; 11] = [
    "UH", "UF", "UO", "NR", "URX", "UT", "UR", "UPE", "DI", "FI", "RL",
];

impl Filter {
    pub fn check(&self) -> Result<(), String> {
        let kinds = [
            self.status_code_filter.is_some(),
            self.duration_filter.is_some(),
            self.response_flag_filter.is_some(),
            self.and_filter.is_some(),
            self.or_filter.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err("a filter needs exactly one of status_code_filter, duration_filter, response_flag_filter, and_filter and or_filter".to_owned());
        }
        if let Some(f) = &self.response_flag_filter {
            if let Some(bad) = f.flags.iter().find(|f| !FLAGS.contains(&f.as_str())) {
                return Err(format!(
                    "response_flag_filter: {bad:?} is not a flag the proxy writes ({})",
                    FLAGS.join(", ")
                ));
            }
        }
        for all in [&self.and_filter, &self.or_filter].into_iter().flatten() {
            if all.filters.len() < 2 {
                return Err("and_filter and or_filter take two filters or more".to_owned());
            }
            for f in &all.filters {
                f.check()?;
            }
        }
        Ok(())
    }

    /// Whether `e`'s line is written.
    pub fn admits(&self, e: &Entry) -> bool {
        if let Some(c) = &self.status_code_filter {
            return c.comparison.holds(u64::from(e.status));
        }
        if let Some(c) = &self.duration_filter {
            let ms = e
                .duration
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            return c.comparison.holds(ms);
        }
        if let Some(f) = &self.response_flag_filter {
            let flags = e.flags.as_ref();
            if flags == "-" {
                return false;
            }
            return f.flags.is_empty() || flags.split(',').any(|x| f.flags.iter().any(|w| w == x));
        }
        if let Some(all) = &self.and_filter {
            return all.filters.iter().all(|f| f.admits(e));
        }
        if let Some(any) = &self.or_filter {
            return any.filters.iter().any(|f| f.admits(e));
        }
        true
    }
}

impl Comparison {
    fn holds(&self, v: u64) -> bool {
        let want = self.value.default_value;
        match self.op {
            Op::Eq => v == want,
            Op::Ne => v != want,
            Op::Ge => v >= want,
            Op::Le => v <= want,
        }
    }
}
