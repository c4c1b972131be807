//! Node configuration, passed explicitly (no global settings).

use caravan_domain::SlaPolicy;

/// Default of [`NodeConfig::max_attachment_bytes`]: 4 GiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 4 << 30;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Shown in the page header.
    pub node_name: String,
    pub sla: SlaPolicy,
    /// Assign the best-ranked consultant automatically on submit and after a decline.
    pub auto_assign: bool,
    /// Largest request body, and largest file of the forms read in memory (study uploads, imports). Attachments
    /// have their own limit.
    pub max_upload_bytes: usize,
    /// Largest case attachment (whole-slide images run to gigabytes). Attachments stream into the blob store as
    /// they arrive, so this bounds storage, not memory; the node's body limit is lifted on the two attachment
    /// upload routes only. On S3 at most 5 GB (the stored file is moved to its content address with one copy).
    pub max_attachment_bytes: u64,
    /// Set the `Secure` flag on cookies. On by default; the demo on plain http://127.0.0.1 turns it off.
    pub secure_cookies: bool,
    /// Default UI language when neither the user, a cookie nor the browser says otherwise.
    pub default_locale: String,
    /// How often the SLA escalation sweep runs.
    pub sweep_every: std::time::Duration,
    /// Health-certificate material (trust lists, rules, issuing keys): `DATA/certs`. `None`: certificate pages
    /// answer 503.
    pub certs_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS with this identity (and mutual TLS for federation peers if it says so); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::NodeTls>>,
    /// Aberration detection on surveillance reports; `None`: Farrington flexible with the Noufaily settings,
    /// falling back to EARS C2 for short series (`surveil::default_method`).
    pub surveillance_method: Option<surveillance::Method>,
    /// Video visits: TURN relay, relay-only policy, audio-only thresholds.
    pub visits: crate::visits::VisitsConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_name: "Caravan".into(),
            sla: SlaPolicy::default(),
            auto_assign: true,
            max_upload_bytes: 20 * 1024 * 1024,
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            secure_cookies: true,
            default_locale: "en".into(),
            sweep_every: std::time::Duration::from_secs(60),
            certs_dir: None,
            tls: None,
            surveillance_method: None,
            visits: crate::visits::VisitsConfig::default(),
        }
    }
}
