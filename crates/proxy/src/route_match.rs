//! What a route matches besides its Host and path prefix, and where it sends what it matched:
//! an exact `path` or a `path_regex`, request `headers` (Envoy's `HeaderMatcher`: exact, prefix,
//! suffix, contains or regex match, presence, inverted), and `weighted_clusters` (Envoy's
//! traffic split: each request goes to one of several clusters, in proportion to their
//! weights; a canary takes 5% while the stable version takes the rest).
//!
//! And how a route changes the path it sends on: `prefix_rewrite` (the matched prefix replaced)
//! or `regex_rewrite` (every match of a pattern in the path replaced, capture groups written
//! `\1` as in RE2's substitutions; the query is left as it is).
//!
//! Regular expressions are RE2's syntax (the `regex` crate), as Envoy's `safe_regex` is, and
//! match the whole path or value, as Envoy's do.

use http::HeaderMap;
use serde::Deserialize;

/// One of a route's `headers`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    pub name: String,
    /// How the value must read.
    #[serde(default)]
    pub string_match: Option<StringMatch>,
    /// The legacy form of `string_match: { exact: ... }`.
    #[serde(default)]
    pub exact_match: Option<String>,
    /// Whether the header must be there (`true`) or absent (`false`), whatever its value.
    #[serde(default)]
    pub present_match: Option<bool>,
    /// Matches what the rest would not.
    #[serde(default)]
    pub invert_match: bool,
}

/// Envoy's `StringMatcher`: exactly one of its ways.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<SafeRegex>,
    #[serde(default)]
    pub ignore_case: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRegex {
    pub regex: String,
}

/// Envoy's `regex_rewrite`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pub pattern: SafeRegex,
    pub substitution: String,
}

/// How a route changes the path it sends on.
#[derive(Debug)]
pub enum PathRewrite {
    /// (the route's path prefix, what replaces it).
    Prefix(String, String),
    /// (the pattern, the substitution in the `regex` crate's syntax).
    Regex(regex::Regex, String),
}

impl RegexRewrite {
    pub fn compile(&self) -> Result<PathRewrite, String> {
        let re = regex::Regex::new(&self.pattern.regex)
            .map_err(|e| format!("regex_rewrite: regex {:?}: {e}", self.pattern.regex))?;
        // RE2's `\1` becomes `${1}`; a literal `$` is `$$` in the regex crate.
        let mut out = String::with_capacity(self.substitution.len() + 8);
        let mut chars = self.substitution.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '$' => out.push_str("$$"),
                '\\' => match chars.next() {
                    Some(d) if d.is_ascii_digit() => {
                        let n = d.to_digit(10).unwrap_or(0) as usize;
                        if n > re.captures_len() - 1 {
                            return Err(format!(
                                "regex_rewrite: substitution {:?} names group \\{n}, and the pattern has {}",
                                self.substitution,
                                re.captures_len() - 1
                            ));
                        }
                        out.push_str(&format!("${{{n}}}"));
                    }
                    Some('\\') => out.push('\\'),
                    _ => {
                        return Err(format!(
                            "regex_rewrite: substitution {:?}: a backslash goes before a group number or another backslash",
                            self.substitution
                        ))
                    }
                },
                c => out.push(c),
            }
        }
        Ok(PathRewrite::Regex(re, out))
    }
}

impl PathRewrite {
    /// `path_and_query` as the route sends it, `None` when it is unchanged.
    pub fn apply(&self, path_and_query: &str) -> Option<String> {
        match self {
            PathRewrite::Prefix(from, to) => {
                let rest = path_and_query.strip_prefix(from.as_str())?;
                // `/` + `/items` is one slash, not two.
                Some(if to.ends_with('/') && rest.starts_with('/') {
                    format!("{to}{}", &rest[1..])
                } else {
                    format!("{to}{rest}")
                })
            }
            PathRewrite::Regex(re, with) => {
                let (path, query) = match path_and_query.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (path_and_query, None),
                };
                let replaced = re.replace_all(path, with.as_str());
                if let std::borrow::Cow::Borrowed(_) = replaced {
                    return None;
                }
                Some(match query {
                    Some(q) => format!("{replaced}?{q}"),
                    None => replaced.into_owned(),
                })
            }
        }
    }
}

/// A route's `weighted_clusters`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedClusters {
    pub clusters: Vec<WeightedCluster>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

/// A header matcher ready to test requests.
#[derive(Debug)]
pub struct Header {
    name: http::HeaderName,
    test: Test,
    invert: bool,
}

#[derive(Debug)]
enum Test {
    Present(bool),
    Value(ValueMatch),
}

/// A [`StringMatch`] ready to test values.
#[derive(Debug)]
pub enum ValueMatch {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(regex::Regex),
}

impl StringMatch {
    /// The matcher, its mistakes named.
    pub fn compile(&self) -> Result<ValueMatch, String> {
        let ways = [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.suffix.is_some(),
            self.contains.is_some(),
            self.safe_regex.is_some(),
        ];
        if ways.iter().filter(|&&w| w).count() != 1 {
            return Err(
                "needs exactly one of exact, prefix, suffix, contains and safe_regex".to_owned(),
            );
        }
        let ic = self.ignore_case;
        let lower = |s: &str| if ic { s.to_lowercase() } else { s.to_owned() };
        Ok(if let Some(s) = &self.exact {
            ValueMatch::Exact(lower(s), ic)
        } else if let Some(s) = &self.prefix {
            ValueMatch::Prefix(lower(s), ic)
        } else if let Some(s) = &self.suffix {
            ValueMatch::Suffix(lower(s), ic)
        } else if let Some(s) = &self.contains {
            ValueMatch::Contains(lower(s), ic)
        } else {
            let r = self.safe_regex.as_ref().map_or("", |r| r.regex.as_str());
            ValueMatch::Regex(whole(r)?)
        })
    }
}

impl ValueMatch {
    pub fn matches(&self, v: &str) -> bool {
        fn fold(v: &str, ic: bool) -> std::borrow::Cow<'_, str> {
            if ic {
                std::borrow::Cow::Owned(v.to_lowercase())
            } else {
                std::borrow::Cow::Borrowed(v)
            }
        }
        match self {
            ValueMatch::Exact(s, ic) => fold(v, *ic) == s.as_str(),
            ValueMatch::Prefix(s, ic) => fold(v, *ic).starts_with(s.as_str()),
            ValueMatch::Suffix(s, ic) => fold(v, *ic).ends_with(s.as_str()),
            ValueMatch::Contains(s, ic) => fold(v, *ic).contains(s.as_str()),
            ValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// A whole-string regex (Envoy's `safe_regex` matches the whole value).
pub fn whole(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("regex {pattern:?}: {e}"))
}

impl HeaderMatcher {
    /// The matcher, its mistakes named.
    pub fn compile(&self) -> Result<Header, String> {
        let name = http::HeaderName::from_bytes(self.name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("headers: {:?} is not a header name", self.name))?;
        let test = match (&self.string_match, &self.exact_match, self.present_match) {
            (Some(m), None, None) => Test::Value(m.compile().map_err(|e| {
                let e = e.replace("needs exactly", "string_match needs exactly");
                format!("headers: {:?}: {e}", self.name)
            })?),
            (None, Some(exact), None) => Test::Value(ValueMatch::Exact(exact.clone(), false)),
            (None, None, Some(present)) => Test::Present(present),
            // Only a name: the header must be there (Envoy's default).
            (None, None, None) => Test::Present(true),
            _ => {
                return Err(format!(
                    "headers: {:?}: give one of string_match, exact_match and present_match",
                    self.name
                ))
            }
        };
        Ok(Header {
            name,
            test,
            invert: self.invert_match,
        })
    }
}

impl Header {
    /// Whether `headers` match (all the values of a repeated header, joined by commas, as
    /// Envoy reads them).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let value: Option<String> = match values.next() {
            None => None,
            Some(first) => {
                let mut v = String::from_utf8_lossy(first.as_bytes()).into_owned();
                for more in values {
                    v.push(',');
                    v.push_str(&String::from_utf8_lossy(more.as_bytes()));
                }
                Some(v)
            }
        };
        let hit = match (&self.test, value.as_deref()) {
            (Test::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Test::Value(m), Some(v)) => m.matches(v),
        };
        hit != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(yaml: &str) -> Header {
        serde_yaml::from_str::<HeaderMatcher>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_matchers_read_as_envoys() {
        let canary = headers(&[("x-canary", "true"), ("x-user", "Alice@Example.com")]);
        let none = HeaderMap::new();
        for (yaml, on_canary, on_none) in [
            ("{ name: x-canary }", true, false),
            ("{ name: X-Canary, exact_match: 'true' }", true, false),
            ("{ name: x-canary, present_match: false }", false, true),
            (
                "{ name: x-canary, string_match: { exact: 'TRUE', ignore_case: true } }",
                true,
                false,
            ),
            (
                "{ name: x-user, string_match: { suffix: '@example.com' } }",
                false,
                false,
            ),
            (
                "{ name: x-user, string_match: { suffix: '@example.com', ignore_case: true } }",
                true,
                false,
            ),
            (
                "{ name: x-user, string_match: { prefix: Ali } }",
                true,
                false,
            ),
            (
                "{ name: x-user, string_match: { contains: '@' } }",
                true,
                false,
            ),
            (
                "{ name: x-user, string_match: { safe_regex: { regex: '[A-Z][a-z]+@.*' } } }",
                true,
                false,
            ),
            (
                "{ name: x-user, string_match: { safe_regex: { regex: 'Alice' } } }",
                false,
                false,
            ),
            (
                "{ name: x-canary, exact_match: 'true', invert_match: true }",
                false,
                true,
            ),
        ] {
            let m = matcher(yaml);
            assert_eq!(
                (m.matches(&canary), m.matches(&none)),
                (on_canary, on_none),
                "{yaml}"
            );
        }
        let twice = headers(&[("x-tag", "a"), ("x-tag", "b")]);
        assert!(matcher("{ name: x-tag, exact_match: 'a,b' }").matches(&twice));
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, want) in [
            (
                "{ name: x, string_match: { exact: a, prefix: b } }",
                "exactly one of exact",
            ),
            (
                "{ name: x, string_match: { safe_regex: { regex: '(' } } }",
                "regex \"(\"",
            ),
            (
                "{ name: x, exact_match: a, present_match: true }",
                "give one of",
            ),
            ("{ name: 'a b' }", "not a header name"),
        ] {
            let e = serde_yaml::from_str::<HeaderMatcher>(yaml)
                .unwrap()
                .compile()
                .unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn regex_rewrites_replace_every_match_in_the_path_and_keep_the_query() {
        let rewrite = |yaml: &str| {
            serde_yaml::from_str::<RegexRewrite>(yaml)
                .unwrap()
                .compile()
        };
        // Envoy's two examples.
        let r = rewrite(
            r#"{ pattern: { regex: '^/service/([^/]+)(/.*)$' }, substitution: '\2/instance/\1' }"#,
        )
        .unwrap();
        assert_eq!(
            r.apply("/service/foo/v1/api?x=1").as_deref(),
            Some("/v1/api/instance/foo?x=1")
        );
        let r = rewrite("{ pattern: { regex: one }, substitution: two }").unwrap();
        assert_eq!(
            r.apply("/xxx/one/yyy/one/zzz").as_deref(),
            Some("/xxx/two/yyy/two/zzz")
        );
        assert_eq!(
            r.apply("/nothing?one=1"),
            None,
            "the query is not rewritten"
        );
        let r = rewrite(r#"{ pattern: { regex: '^/a' }, substitution: '/$1\\' }"#).unwrap();
        assert_eq!(
            r.apply("/a/b").as_deref(),
            Some("/$1\\/b"),
            "literal $ and backslash"
        );
        let err = rewrite(r#"{ pattern: { regex: '(a)(b)' }, substitution: '\3' }"#).unwrap_err();
        assert!(
            err.contains("names group \\3, and the pattern has 2"),
            "{err}"
        );
        let err = rewrite(r#"{ pattern: { regex: 'a' }, substitution: '\x' }"#).unwrap_err();
        assert!(err.contains("a backslash goes before"), "{err}");
        assert!(rewrite("{ pattern: { regex: '(' }, substitution: x }").is_err());
    }
}
