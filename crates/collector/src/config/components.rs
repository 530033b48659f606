//! The settings of each component type, as the OpenTelemetry Collector spells them.
//!
//! Every struct denies unknown fields, so a typo or an option meshtrace does not implement is an
//! error naming the key and its line rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

// ---------------------------------------------------------------- receivers

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiver {
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    /// `grpc:` with no value enables gRPC with defaults, hence the double option.
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<ServerSettings>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<ServerSettings>,
}

/// A listener: `endpoint` and the request size limit.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub endpoint: Option<String>,
    /// gRPC: largest message in MiB.
    pub max_recv_msg_size_mib: Option<u64>,
    /// gRPC: requests in flight at once on one connection.
    pub max_concurrent_streams: Option<u32>,
    /// gRPC: pings and connection ages.
    pub keepalive: Option<Box<ServerKeepalive>>,
    /// HTTP: largest body in bytes.
    pub max_request_body_size: Option<u64>,
    /// HTTP: where traces are posted (default `/v1/traces`).
    pub traces_url_path: Option<String>,
    /// TLS on this listener (plaintext when absent).
    pub tls: Option<Box<ServerTls>>,
    /// HTTP only: which browser pages may send spans.
    pub cors: Option<CorsSettings>,
    /// Credentials every request must carry (a `basicauth` or `bearertokenauth` extension).
    pub auth: Option<AuthRef>,
}

/// A gRPC receiver's `keepalive`, as the OTel Collector's `configgrpc.KeepaliveServerConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerKeepalive {
    pub server_parameters: Option<KeepaliveServerParameters>,
    /// Refused by validation: the HTTP/2 server does not police clients' pings.
    pub enforcement_policy: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// Refused by validation: connections are not closed for idleness.
    #[serde(with = "opt_duration_serde")]
    pub max_connection_idle: Option<Duration>,
    /// Ask clients to reconnect once a connection is this old (GOAWAY).
    #[serde(with = "opt_duration_serde")]
    pub max_connection_age: Option<Duration>,
    /// Calls in flight get this long to finish after that.
    #[serde(with = "opt_duration_serde")]
    pub max_connection_age_grace: Option<Duration>,
    /// Ping a client after this long without activity.
    #[serde(with = "opt_duration_serde")]
    pub time: Option<Duration>,
    /// Close the connection when a ping is not answered within this.
    #[serde(with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
}

impl ServerSettings {
    /// The gRPC server's connection settings.
    pub fn connections(&self) -> receiver::otlp_grpc::Connections {
        let p = self
            .keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.clone())
            .unwrap_or_default();
        receiver::otlp_grpc::Connections {
            max_concurrent_streams: self.max_concurrent_streams,
            keepalive_time: p.time.filter(|t| !t.is_zero()),
            keepalive_timeout: p.timeout.filter(|t| !t.is_zero()),
            max_connection_age: p.max_connection_age.filter(|t| !t.is_zero()),
            max_connection_age_grace: p.max_connection_age_grace,
        }
    }
}

/// An HTTP receiver's `cors` block, as the OTel Collector's `confighttp.CORSConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Exact origins, `*`, or origins with one `*` (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides the CORS-safelisted ones.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: Option<u64>,
}

impl CorsSettings {
    /// The receiver crate's form.
    pub fn to_cors(&self) -> receiver::cors::Cors {
        receiver::cors::Cors {
            allowed_origins: self.allowed_origins.clone(),
            allowed_headers: self.allowed_headers.clone(),
            max_age: self.max_age.map(Duration::from_secs),
        }
    }
}

/// A receiver's TLS settings, as the OTel Collector's `configtls.ServerConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// The server's certificate chain (PEM), or `cert_pem` inline.
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    /// Its private key (PEM), or `key_pem` inline.
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_ca_file: Option<String>,
    /// Read the client CA file again whenever it changes (looked at every 2 s).
    pub client_ca_file_reload: bool,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Cipher suites (Go's names) and key-exchange groups allowed; all on offer by default.
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    /// Read the certificate, key and client CA files again this often (rotated certificates
    /// without a restart); never when unset.
    #[serde(default, with = "opt_duration_serde")]
    pub reload_interval: Option<Duration>,
}

/// Deserializes a key that may be present with a null value into `Some(default)`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZipkinReceiver {
    pub endpoint: Option<String>,
    pub max_request_body_size: Option<u64>,
    pub tls: Option<Box<ServerTls>>,
    pub cors: Option<CorsSettings>,
    pub auth: Option<AuthRef>,
    /// Span tags that read as integers, decimals or booleans become those (off: all strings).
    #[serde(default)]
    pub parse_string_tags: bool,
}

// ---------------------------------------------------------------- processors

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SamplerMode {
    HashSeed,
    Proportional,
    Equalizing,
    /// Not set: `hash_seed` when a hash seed is given, else `proportional` (as the OTel Collector).
    #[default]
    #[serde(skip)]
    Unset,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSampler {
    pub sampling_percentage: f32,
    pub hash_seed: u32,
    pub mode: SamplerMode,
    pub fail_closed: bool,
    pub sampling_precision: u8,
}

impl Default for ProbabilisticSampler {
    fn default() -> Self {
        Self {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: SamplerMode::Unset,
            fail_closed: true,
            sampling_precision: 4,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Batch {
    pub send_batch_size: usize,
    pub send_batch_max_size: usize,
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
}

/// One `attributes`/`resource` action.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub key: String,
    pub action: ActionKind,
    pub value: Option<serde_yaml::Value>,
    pub from_attribute: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Only spans that match (all when unset)...
    pub include: Option<Box<MatchProperties>>,
    /// ...and do not match this.
    pub exclude: Option<Box<MatchProperties>>,
}

/// Which spans a processor works on, as the OTel Collector's `filterconfig.MatchProperties`:
/// every property given must match (within one, any of its values); `match_type` says how
/// names and values compare (`strict`: equal; `regexp`: the pattern is found in them).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchProperties {
    pub match_type: Option<String>,
    /// The regexp cache settings: accepted (patterns are compiled once here).
    pub regexp: Option<serde_yaml::Value>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default)]
    pub span_kinds: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<MatchAttribute>,
    #[serde(default)]
    pub resources: Vec<MatchAttribute>,
    #[serde(default)]
    pub libraries: Vec<MatchLibrary>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchAttribute {
    pub key: String,
    /// Absent: the key must be there, with any value.
    pub value: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchLibrary {
    pub name: String,
    pub version: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceProcessor {
    #[serde(default)]
    pub attributes: Vec<Action>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiter {
    #[serde(with = "duration_serde")]
    pub check_interval: Duration,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

// ---------------------------------------------------------------- exporters

/// An exporter's client TLS settings, as the OTel Collector's `configtls.ClientConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// No TLS at all (gRPC exporters; an `http://` endpoint means the same). HTTP exporters
    /// follow the URL's scheme and ignore it, as the OTel Collector's HTTP client does.
    pub insecure: bool,
    /// Refused by validation: a server's certificate is always checked (trust a private CA
    /// with `ca_file` instead).
    pub insecure_skip_verify: bool,
    /// PEM file of the CA(s) that signed the server's certificate, instead of the system's.
    pub ca_file: Option<String>,
    /// The same, inline.
    pub ca_pem: Option<String>,
    /// Also trust the system's CAs when `ca_file`/`ca_pem` is set.
    pub include_system_ca_certs_pool: bool,
    /// Client certificate (PEM) for mutual TLS, with `key_file`.
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// The name checked against the server's certificate, instead of the endpoint's host.
    pub server_name_override: Option<String>,
    /// `"1.2"` or `"1.3"`; both allowed by default.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Cipher suites (Go's names) and key-exchange groups allowed; all on offer by default.
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    /// Read the CA, certificate and key files again when a connection is made this long after
    /// they were last read (rotated certificates without a restart); never when unset.
    #[serde(default, with = "opt_duration_serde")]
    pub reload_interval: Option<Duration>,
}

/// A gRPC client's `keepalive`, as the OTel Collector's `configgrpc.KeepaliveClientConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    /// Ping the server after this long without activity.
    #[serde(with = "opt_duration_serde")]
    pub time: Option<Duration>,
    /// Close the connection when a ping is not answered within this.
    #[serde(with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    /// Ping even while no request is in flight.
    pub permit_without_stream: bool,
}

/// An exporter's `compression` (gzip when unset, as the OTel Collector).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
    #[serde(rename = "")]
    Empty,
}

impl Compression {
    /// What `compression` says, gzip when it is not set; `None` for no compression.
    pub fn of(setting: Option<Compression>) -> Option<Compression> {
        match setting.unwrap_or(Compression::Gzip) {
            Compression::None | Compression::Empty => None,
            c => Some(c),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOnFailure {
    pub enabled: bool,
    #[serde(with = "duration_serde")]
    pub initial_interval: Duration,
    pub randomization_factor: f64,
    pub multiplier: f64,
    #[serde(with = "duration_serde")]
    pub max_interval: Duration,
    /// Zero means retry forever.
    #[serde(with = "duration_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryOnFailure {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    pub enabled: bool,
    pub num_consumers: usize,
    /// Capacity in batches (requests), as the OTel Collector counts by default.
    pub queue_size: usize,
    /// A `file_storage` extension id: makes the queue persistent.
    pub storage: Option<String>,
    /// When the queue is full, the receiver waits for room instead of answering "overloaded"
    /// (its client then waits too: backpressure all the way, nothing refused).
    pub block_on_overflow: bool,
    /// What `queue_size` counts: `requests` (batches), the only one meshtrace implements.
    pub sizer: Option<String>,
}

impl Default for SendingQueue {
    fn default() -> Self {
        Self {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
            block_on_overflow: false,
            sizer: None,
        }
    }
}

/// `otlp` (gRPC) and `otlphttp` exporters.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporter {
    pub endpoint: Option<String>,
    /// otlphttp only: the full URL for traces (overrides `endpoint` + `/v1/traces`).
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub tls: Tls,
    pub compression: Option<Compression>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    /// otlphttp only: `proto` (default) or `json`.
    pub encoding: Option<String>,
    /// otlp (gRPC) only: HTTP/2 pings that find a dead connection before a request does.
    pub keepalive: Option<GrpcKeepalive>,
    /// Credentials sent with every request (a `basicauth` or `bearertokenauth` extension).
    pub auth: Option<AuthRef>,
    #[serde(default)]
    pub sending_queue: SendingQueue,
    #[serde(default)]
    pub retry_on_failure: RetryOnFailure,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZipkinExporter {
    pub endpoint: Option<String>,
    /// `json` (default) or `proto`.
    pub format: Option<String>,
    pub default_service_name: Option<String>,
    /// For an `https://` endpoint: the CAs, client certificate and server name.
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub auth: Option<AuthRef>,
    #[serde(default, with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub sending_queue: SendingQueue,
    #[serde(default)]
    pub retry_on_failure: RetryOnFailure,
}

/// `file`: every batch written to a file, as OTLP JSON lines or length-prefixed protobuf.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileExporter {
    #[serde(default)]
    pub path: String,
    /// `json` (default: one OTLP/JSON request per line) or `proto`.
    pub format: Option<String>,
    /// `zstd`: each record compressed (and length-prefixed).
    pub compression: Option<String>,
    /// Add to an existing file instead of starting it anew.
    #[serde(default)]
    pub append: bool,
    /// Accepted: every batch is written through to the file as it is exported.
    #[serde(default, with = "opt_duration_serde")]
    pub flush_interval: Option<Duration>,
    pub rotation: Option<FileRotation>,
    /// Refused by validation: one file per resource attribute value is not built.
    pub group_by: Option<serde_yaml::Value>,
}

/// When the file is moved aside (`NAME-<UTC time>.EXT` beside it) and a new one started.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileRotation {
    pub max_megabytes: u64,
    /// Older backups are deleted (0: kept whatever their age).
    pub max_days: u64,
    /// More backups than this are deleted, oldest first (0: all kept).
    pub max_backups: u64,
    /// Refused by validation: backups are named in UTC.
    pub localtime: bool,
}

impl Default for FileRotation {
    fn default() -> Self {
        Self {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DebugExporter {
    #[serde(default)]
    pub verbosity: Verbosity,
    pub sampling_initial: Option<u64>,
    pub sampling_thereafter: Option<u64>,
}

// ---------------------------------------------------------------- extensions

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileStorage {
    pub directory: Option<String>,
    #[serde(default, with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub create_directory: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub endpoint: Option<String>,
    pub path: Option<String>,
}

/// A component's `auth` block: which authenticator extension it uses.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthRef {
    pub authenticator: String,
}

/// `basicauth`: HTTP Basic credentials that exporters send (`client_auth`) or that receivers
/// require (`htpasswd`); one instance does one of the two.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub htpasswd: Option<HtpasswdSource>,
    pub client_auth: Option<ClientCredentials>,
}

/// Accepted users, as htpasswd lines in a file and/or inline (inline lines win for a user
/// both name).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdSource {
    pub file: Option<String>,
    pub inline: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// `bearertokenauth`: a token sent as `<scheme> <token>` in a header (`authorization` by
/// default) by exporters, or required in it by receivers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenAuth {
    pub scheme: String,
    pub header: String,
    pub token: Option<String>,
    /// A file holding the token (read again when it changes); wins over `token`.
    pub filename: Option<String>,
    /// Receivers: any of these is accepted (besides `token`).
    pub tokens: Vec<String>,
}

impl Default for BearerTokenAuth {
    fn default() -> Self {
        Self {
            scheme: "Bearer".into(),
            header: "authorization".into(),
            token: None,
            filename: None,
            tokens: Vec::new(),
        }
    }
}

/// `oauth2client`: a token from the client credentials grant, sent by exporters.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Client {
    #[serde(default)]
    pub client_id: String,
    pub client_id_file: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub token_url: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    /// For an `https://` token URL.
    #[serde(default)]
    pub tls: Tls,
    #[serde(default, with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    /// A token is fetched again this long before it expires (default 10 s).
    #[serde(default, with = "opt_duration_serde")]
    pub expiry_buffer: Option<Duration>,
}

/// The settings of `pprof` and `zpages` (both have an `endpoint`; `pprof` its profile knobs).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GoDebugPages {
    pub endpoint: Option<String>,
    pub block_profile_fraction: Option<i64>,
    pub mutex_profile_fraction: Option<i64>,
    pub save_to_file: Option<String>,
}

mod duration_serde {
    pub use super::duration::deserialize;
}

mod opt_duration_serde {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

impl ProbabilisticSampler {
    /// The mode in force: an unset mode is `hash_seed` when a seed is given, else `proportional`.
    pub fn effective_mode(&self) -> SamplerMode {
        match self.mode {
            SamplerMode::Unset if self.hash_seed != 0 => SamplerMode::HashSeed,
            SamplerMode::Unset => SamplerMode::Proportional,
            m => m,
        }
    }
}

/// `filter`: spans that match any of `traces.span`'s OTTL conditions are dropped.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterProcessor {
    /// `propagate` (default), `ignore` or `silent`: what a condition that fails on a span (a
    /// converter given the wrong type) does: fail the batch, or keep the span (logged, or not).
    pub error_mode: Option<String>,
    #[serde(default)]
    pub traces: FilterTraces,
    /// The older `spans: {include, exclude}` form: refused by validation, with the OTTL form
    /// to use instead.
    pub spans: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterTraces {
    pub span: Vec<String>,
    /// Refused by validation: dropping span events is not built.
    pub spanevent: Vec<String>,
}

/// `span`: renames spans from their attributes or extracts attributes from their names, and
/// sets their status, on the spans `include`/`exclude` choose.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpanProcessor {
    pub include: Option<Box<MatchProperties>>,
    pub exclude: Option<Box<MatchProperties>>,
    pub name: Option<SpanName>,
    pub status: Option<SpanStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanName {
    /// The new name is these attributes' values joined by `separator` (when all are there).
    pub from_attributes: Vec<String>,
    pub separator: String,
    pub to_attributes: Option<ToAttributes>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToAttributes {
    /// Patterns whose named groups become attributes, their part of the name `{group}`.
    pub rules: Vec<String>,
    pub break_after_match: bool,
    pub keep_original_name: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpanStatus {
    /// `Ok`, `Error` or `Unset`.
    pub code: String,
    /// Only with `Error`.
    pub description: Option<String>,
}

/// `redaction`: attributes not on an allow list removed, and values matching blocked patterns
/// masked, on resources, scopes, spans and span events.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionProcessor {
    pub allow_all_keys: bool,
    pub allowed_keys: Vec<String>,
    pub ignored_keys: Vec<String>,
    pub ignored_key_patterns: Vec<String>,
    pub blocked_values: Vec<String>,
    pub blocked_key_patterns: Vec<String>,
    pub allowed_values: Vec<String>,
    /// `debug`, `info` or `silent` (default).
    pub summary: Option<String>,
    /// Mask the text of numbers and booleans too (else only strings are looked at).
    pub redact_all_types: bool,
    /// Refused by validation: masked values are `****`, not hashes.
    pub hash_function: Option<String>,
    pub hmac_key: Option<String>,
    /// Refused by validation: not built.
    pub url_sanitization: Option<serde_yaml::Value>,
    pub db_sanitizer: Option<serde_yaml::Value>,
}

/// `groupbyattrs`: span attributes named in `keys` move to the resource, and spans regroup by
/// resource; with no keys, batches are compacted (equal resources and scopes merged).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupByAttrs {
    pub keys: Vec<String>,
}

/// `transform`: OTTL statements that edit spans and resources.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformProcessor {
    /// `propagate` (default: a statement that fails refuses the batch), `ignore` (logged and
    /// skipped) or `silent` (skipped).
    pub error_mode: Option<String>,
    #[serde(default)]
    pub trace_statements: Vec<StatementGroup>,
}

/// A group of statements for one context, or (the newer short form) one statement of the span
/// context.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StatementGroup {
    One(String),
    Group(ContextStatements),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextStatements {
    /// `span` (default) or `resource`.
    pub context: Option<String>,
    /// The statements run on what matches any of these (all when empty).
    #[serde(default)]
    pub conditions: Vec<String>,
    #[serde(default)]
    pub statements: Vec<String>,
}

/// `resourcedetection`: attributes of the host the collector runs on, added to every span's
/// resource (`env`: `OTEL_RESOURCE_ATTRIBUTES`; `system`: host name, OS type, ...).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceDetection {
    pub detectors: Vec<String>,
    /// Detected values replace a resource's own (default), or only fill in what it lacks.
    #[serde(rename = "override")]
    pub overwrite: bool,
    /// Accepted for compatibility: the detectors built here ask no remote service.
    #[serde(with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
    /// Only these detected keys are added (all when unset).
    pub attributes: Option<Vec<String>>,
    pub system: SystemDetector,
}

impl Default for ResourceDetection {
    fn default() -> Self {
        Self {
            detectors: vec!["env".into()],
            overwrite: true,
            timeout: None,
            attributes: None,
            system: SystemDetector::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemDetector {
    /// Where `host.name` comes from, first that answers: `dns` (the name's canonical form in
    /// /etc/hosts) and `os` (the kernel's host name); default both, in that order.
    pub hostname_sources: Option<Vec<String>>,
    /// Which attributes to add: `host.name` and `os.type` by default; `host.arch` and
    /// `host.id` on request.
    pub resource_attributes: BTreeMap<String, Enabled>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    pub enabled: bool,
}

// ---------------------------------------------------------------- tail sampling

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailSampling {
    #[serde(with = "duration_serde")]
    pub decision_wait: Duration,
    pub num_traces: usize,
    /// Accepted for compatibility; meshtrace sizes its maps as traces come.
    pub expected_new_traces_per_sec: u64,
    pub decision_cache: DecisionCache,
    /// meshtrace's byte cap on buffered spans (estimated), in MiB: past it the largest
    /// buffered trace is decided early, so one huge trace cannot push the others out.
    pub max_buffer_mib: u64,
    pub policies: Vec<TailPolicy>,
}

impl Default for TailSampling {
    fn default() -> Self {
        Self {
            decision_wait: Duration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCache::default(),
            max_buffer_mib: 256,
            policies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCache {
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
}

impl Default for DecisionCache {
    fn default() -> Self {
        Self {
            sampled_cache_size: 100_000,
            non_sampled_cache_size: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TailPolicyType {
    AlwaysSample,
    Latency,
    StatusCode,
    StringAttribute,
    NumericAttribute,
    Probabilistic,
    RateLimiting,
    SpanCount,
    And,
    Composite,
    BooleanAttribute,
    TraceState,
    OttlCondition,
}

/// One tail-sampling policy: `name`, `type`, and the settings block named after the type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TailPolicy {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TailPolicyType,
    pub latency: Option<LatencyPolicy>,
    pub status_code: Option<StatusCodePolicy>,
    pub string_attribute: Option<StringAttributePolicy>,
    pub numeric_attribute: Option<NumericAttributePolicy>,
    pub probabilistic: Option<ProbabilisticPolicy>,
    pub rate_limiting: Option<RateLimitingPolicy>,
    pub span_count: Option<SpanCountPolicy>,
    pub and: Option<AndPolicy>,
    pub composite: Option<CompositePolicy>,
    pub boolean_attribute: Option<BooleanAttributePolicy>,
    pub trace_state: Option<TraceStatePolicy>,
    pub ottl_condition: Option<OttlConditionPolicy>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributePolicy {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

/// Sampled when a span's W3C `tracestate` has `key` with one of `values`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStatePolicy {
    pub key: String,
    pub values: Vec<String>,
}

/// Sampled when a span matches one of the OTTL `span` conditions.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OttlConditionPolicy {
    pub error_mode: Option<String>,
    pub span: Vec<String>,
    /// Refused by validation: span event conditions are not built.
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyPolicy {
    pub threshold_ms: u64,
    pub upper_threshold_ms: u64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodePolicy {
    pub status_codes: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributePolicy {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    pub cache_max_size: usize,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributePolicy {
    pub key: String,
    pub min_value: i64,
    pub max_value: i64,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticPolicy {
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

impl Default for ProbabilisticPolicy {
    fn default() -> Self {
        Self {
            hash_salt: "default-hash-seed".into(),
            sampling_percentage: 0.0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingPolicy {
    pub spans_per_second: u64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountPolicy {
    pub min_spans: u64,
    /// 0 means no upper bound.
    pub max_spans: u64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AndPolicy {
    pub and_sub_policy: Vec<TailPolicy>,
}

// ---------------------------------------------------------------- load balancing

/// `loadbalancing` exporter: routes each trace, by id, to one backend of a static list.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingExporter {
    /// `traceID` (default): whole traces go to one backend.
    pub routing_key: Option<String>,
    #[serde(default)]
    pub protocol: LbProtocol,
    #[serde(default)]
    pub resolver: LbResolver,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LbProtocol {
    /// Settings of the OTLP gRPC exporter used for every backend (its endpoint is ignored).
    #[serde(default)]
    pub otlp: OtlpExporter,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LbResolver {
    pub r#static: Option<StaticResolver>,
    pub dns: Option<DnsResolver>,
    pub k8s: Option<serde_yaml::Value>,
}

/// The `dns` resolver: backends are the addresses `hostname` resolves to (a headless service),
/// looked up again every `interval`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    pub hostname: String,
    /// Default 4317.
    pub port: Option<u16>,
    /// Default 5s.
    #[serde(default, with = "opt_duration_serde")]
    pub interval: Option<Duration>,
    /// Default 1s.
    #[serde(default, with = "opt_duration_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// `composite`: sub-policies tried in `policy_order`, each with a share of a spans-per-second
/// budget (`rate_allocation`, percent of `max_total_spans_per_second`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompositePolicy {
    pub max_total_spans_per_second: u64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<TailPolicy>,
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocation {
    pub policy: String,
    pub percent: u64,
}

/// A `connectors` entry: the exporter end of one pipeline and the receiver end of others.
#[derive(Clone, Debug, PartialEq)]
pub enum Connector {
    /// `forward`: what one pipeline sends, the others receive (pipelines chained, a shared
    /// front half with several back halves).
    Forward(ForwardConnector),
    /// `routing`: each resource's spans (or each span) to the pipelines of the first route
    /// whose condition holds, else to `default_pipelines`.
    Routing(RoutingConnector),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForwardConnector {}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingConnector {
    #[serde(default)]
    pub default_pipelines: Vec<String>,
    /// `propagate` (default), `ignore` or `silent`, for conditions failing on an item.
    #[serde(default)]
    pub error_mode: Option<String>,
    #[serde(default)]
    pub table: Vec<RoutingRoute>,
    /// The older collectors' switch: `true` (each item to the first matching route, the
    /// collector's behaviour now) or `false` (to every matching route).
    #[serde(default)]
    pub match_once: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingRoute {
    /// `resource` (default: `attributes` are the resource's) or `span`.
    #[serde(default)]
    pub context: Option<String>,
    /// An OTTL condition; or `statement: route() where CONDITION`, the older form.
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub statement: Option<String>,
    #[serde(default)]
    pub pipelines: Vec<String>,
}

impl RoutingRoute {
    /// The route's condition text, from either form.
    pub fn condition_text(&self) -> Result<&str, String> {
        match (&self.condition, &self.statement) {
            (Some(c), None) => Ok(c.as_str()),
            (None, Some(s)) => s
                .trim()
                .strip_prefix("route()")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix("where "))
                .map(str::trim)
                .ok_or_else(|| format!("statement {s:?}: write route() where CONDITION")),
            _ => Err("each route needs exactly one of condition and statement".to_owned()),
        }
    }
}
