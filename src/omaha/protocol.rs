//! Omaha v3 wire format: request parsing and response serialization.
//!
//! Every byte here comes from untrusted clients (update_engine, Google Omaha,
//! `updateservicectl`), so parsing is a bounded, DOM-free streaming pass that
//! rejects DOCTYPEs outright. The response writer emits one fixed one-line
//! shape so existing CoreRoller clients see the responses they expect.

use std::borrow::Cow;

use quick_xml::escape::{resolve_predefined_entity, unescape};
use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

/// Largest request (or response) body accepted; callers enforce it before parsing too.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most `<app>` elements accepted in one document.
pub const MAX_APPS: usize = 32;
/// Most `<event>` elements accepted inside one `<app>`.
pub const MAX_EVENTS_PER_APP: usize = 16;
/// Deepest element nesting accepted (the root element is depth 1).
pub const MAX_DEPTH: usize = 16;
/// Most `<manifest>` (and most `<url>`) elements accepted in one parsed `<updatecheck>`.
pub const MAX_MANIFESTS: usize = 32;

/// Value of the `server` attribute in every response.
pub const SERVER_NAME: &str = "rollbridge";

/// Why a document was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("DOCTYPE declarations are not allowed")]
    DoctypeNotAllowed,
    #[error("root element is not <request>")]
    NotARequest,
    #[error("unsupported Omaha protocol version {0:?} (only \"3.0\" is supported)")]
    UnsupportedProtocol(String),
    #[error("missing protocol attribute on the root element")]
    MissingProtocol,
    #[error("more than {MAX_APPS} <app> elements")]
    TooManyApps,
    #[error("more than {MAX_EVENTS_PER_APP} <event> elements in one <app>")]
    TooManyEvents,
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_MANIFESTS} <manifest> or <url> elements in one <updatecheck>")]
    TooManyManifests,
}

// ---------------------------------------------------------------------------
// Request model
// ---------------------------------------------------------------------------

/// Text of a parsed request: borrowed from the body unless it held an entity reference (a
/// fleet's checks then parse without copying a field), owned when a client builds a request.
pub type Text<'a> = Cow<'a, str>;

/// A parsed `<request>`; missing attributes are empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub protocol: Text<'a>,
    pub version: Text<'a>,
    pub updater_version: Text<'a>,
    pub install_source: Text<'a>,
    pub is_machine: Text<'a>,
    pub os: Option<Os<'a>>,
    pub apps: Vec<AppRequest<'a>>,
}

/// The request's `<os>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Os<'a> {
    pub platform: Text<'a>,
    pub version: Text<'a>,
    pub sp: Text<'a>,
    pub arch: Text<'a>,
}

/// One `<app>` of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppRequest<'a> {
    /// As sent, braces kept: the response must echo it verbatim.
    pub appid: Text<'a>,
    pub version: Text<'a>,
    pub track: Text<'a>,
    pub machine_id: Text<'a>,
    pub boot_id: Text<'a>,
    pub oem: Text<'a>,
    pub oem_version: Text<'a>,
    pub aleph_version: Text<'a>,
    pub board: Text<'a>,
    pub machine_alias: Text<'a>,
    pub lang: Text<'a>,
    /// `multi_manifest_ok="true"`: the client (a syncer) accepts floor manifests.
    pub multi_manifest_ok: bool,
    /// A `<ping>` child was present.
    pub ping: bool,
    /// An `<updatecheck>` child was present.
    pub update_check: bool,
    /// `<event>` children in document order.
    pub events: Vec<EventRequest<'a>>,
}

/// One `<event>` of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRequest<'a> {
    /// `None` when missing or not an integer; the caller rejects it but still answers ok.
    pub event_type: Option<i32>,
    pub event_result: Option<i32>,
    /// Empty when missing.
    pub previous_version: Text<'a>,
    /// Empty when missing; kept as text because update_engine ORs flag bits in.
    pub error_code: Text<'a>,
}

impl Request<'_> {
    /// The request with every field copied (to keep it beyond its body).
    pub fn into_owned(self) -> Request<'static> {
        fn own(text: Text<'_>) -> Text<'static> {
            Cow::Owned(text.into_owned())
        }
        Request {
            protocol: own(self.protocol),
            version: own(self.version),
            updater_version: own(self.updater_version),
            install_source: own(self.install_source),
            is_machine: own(self.is_machine),
            os: self.os.map(|os| Os {
                platform: own(os.platform),
                version: own(os.version),
                sp: own(os.sp),
                arch: own(os.arch),
            }),
            apps: self
                .apps
                .into_iter()
                .map(|app| AppRequest {
                    appid: own(app.appid),
                    version: own(app.version),
                    track: own(app.track),
                    machine_id: own(app.machine_id),
                    boot_id: own(app.boot_id),
                    oem: own(app.oem),
                    oem_version: own(app.oem_version),
                    aleph_version: own(app.aleph_version),
                    board: own(app.board),
                    machine_alias: own(app.machine_alias),
                    lang: own(app.lang),
                    multi_manifest_ok: app.multi_manifest_ok,
                    ping: app.ping,
                    update_check: app.update_check,
                    events: app
                        .events
                        .into_iter()
                        .map(|event| EventRequest {
                            event_type: event.event_type,
                            event_result: event.event_result,
                            previous_version: own(event.previous_version),
                            error_code: own(event.error_code),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl AppRequest<'_> {
    /// appid without surrounding braces/whitespace, lower-cased (for lookups).
    pub fn normalized_appid(&self) -> String {
        let id = self.appid.trim();
        let id = id.strip_prefix('{').unwrap_or(id);
        let id = id.strip_suffix('}').unwrap_or(id);
        id.trim().to_ascii_lowercase()
    }
}

impl Request<'_> {
    /// Serializes the request as update_engine would send it (used by rollbridge's own Omaha
    /// clients: the Docker agent and the upstream syncer). `parse_request(to_xml())` round-trips.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256 + 256 * self.apps.len());
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<request");
        push_attr(&mut out, "protocol", &self.protocol);
        push_attr_nonempty(&mut out, "version", &self.version);
        push_attr_nonempty(&mut out, "updaterversion", &self.updater_version);
        push_attr_nonempty(&mut out, "installsource", &self.install_source);
        push_attr_nonempty(&mut out, "ismachine", &self.is_machine);
        out.push('>');
        if let Some(os) = &self.os {
            out.push_str("<os");
            push_attr_nonempty(&mut out, "version", &os.version);
            push_attr_nonempty(&mut out, "platform", &os.platform);
            push_attr_nonempty(&mut out, "sp", &os.sp);
            push_attr_nonempty(&mut out, "arch", &os.arch);
            out.push_str("/>");
        }
        for app in &self.apps {
            out.push_str("<app");
            push_attr(&mut out, "appid", &app.appid);
            push_attr(&mut out, "version", &app.version);
            push_attr_nonempty(&mut out, "track", &app.track);
            push_attr_nonempty(&mut out, "bootid", &app.boot_id);
            push_attr_nonempty(&mut out, "oem", &app.oem);
            push_attr_nonempty(&mut out, "oemversion", &app.oem_version);
            push_attr_nonempty(&mut out, "alephversion", &app.aleph_version);
            push_attr_nonempty(&mut out, "machineid", &app.machine_id);
            push_attr_nonempty(&mut out, "machinealias", &app.machine_alias);
            push_attr_nonempty(&mut out, "lang", &app.lang);
            push_attr_nonempty(&mut out, "board", &app.board);
            if app.multi_manifest_ok {
                push_attr(&mut out, "multi_manifest_ok", "true");
            }
            out.push('>');
            if app.ping {
                out.push_str("<ping active=\"1\"/>");
            }
            if app.update_check {
                out.push_str("<updatecheck/>");
            }
            for event in &app.events {
                out.push_str("<event");
                if let Some(t) = event.event_type {
                    push_attr(&mut out, "eventtype", &t.to_string());
                }
                if let Some(r) = event.event_result {
                    push_attr(&mut out, "eventresult", &r.to_string());
                }
                push_attr_nonempty(&mut out, "previousversion", &event.previous_version);
                push_attr_nonempty(&mut out, "errorcode", &event.error_code);
                out.push_str("/>");
            }
            out.push_str("</app>");
        }
        out.push_str("</request>\n");
        out
    }
}

fn push_attr_nonempty(out: &mut String, name: &str, value: &str) {
    if !value.is_empty() {
        push_attr(out, name, value);
    }
}

// ---------------------------------------------------------------------------
// Response model
// ---------------------------------------------------------------------------

/// A response to serialize with [`Response::to_xml`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response<'a> {
    pub apps: Vec<AppResponse<'a>>,
}

/// One `<app>` of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppResponse<'a> {
    /// Echoed verbatim from the request.
    pub appid: Text<'a>,
    /// `"ok"` or an `"error-..."` string (`omaha::status`).
    pub status: &'static str,
    /// Emit `<ping status="ok"/>`.
    pub ping: bool,
    /// Emit `<updatecheck ...>` when `Some`.
    pub update_check: Option<UpdateCheck>,
    /// Number of `<event status="ok"/>` to emit.
    pub events: usize,
}

/// The `<updatecheck>` of a response app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCheck {
    /// `"ok"`, `"noupdate"`, `"error-internal"`, ... (`omaha::status`)
    pub status: &'static str,
    /// Seconds, emitted as `PollInterval="N"`.
    pub poll_interval: Option<u32>,
    /// Only meaningful with status `"ok"`; emitted whenever `Some`.
    pub manifest: Option<Manifest>,
    /// Multi-manifest answer for syncers that sent `multi_manifest_ok="true"`: when non-empty,
    /// these are written (floors first, the target last) instead of `manifest`.
    pub manifests: Vec<MarkedManifest>,
}

/// One manifest of a multi-manifest answer, with Nebraska's floor/target marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedManifest {
    pub manifest: Manifest,
    pub is_floor: bool,
    pub is_target: bool,
    /// Written only for floors.
    pub floor_reason: String,
}

/// The single package offered by an `"ok"` update check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub codebase: String,
    pub version: String,
    pub package_name: String,
    pub package_hash: String,
    pub package_size: String,
    /// `Some` only for CoreOS (type 1) packages.
    pub action: Option<PostinstallAction>,
}

/// The update_engine `<action event="postinstall" ...>` extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostinstallAction {
    pub sha256: String,
    pub needs_admin: bool,
    pub is_delta: bool,
    pub disable_payload_backoff: bool,
    pub chromeos_version: String,
    pub metadata_signature_rsa: String,
    pub metadata_size: String,
    pub deadline: String,
}

/// A parsed `<response>`, as seen by rollbridge's own Omaha clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedResponse {
    pub apps: Vec<ParsedApp>,
}

/// One `<app>` of a parsed response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedApp {
    pub appid: String,
    pub status: String,
    pub ping_status: Option<String>,
    pub update_check: Option<ParsedUpdateCheck>,
    pub event_statuses: Vec<String>,
}

/// The `<updatecheck>` of a parsed response app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedUpdateCheck {
    pub status: String,
    pub poll_interval: Option<u32>,
    pub codebases: Vec<String>,
    /// Several when the server answers multi-manifest (floors).
    pub manifests: Vec<ParsedManifest>,
}

/// One `<manifest>` of a parsed update check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedManifest {
    pub version: String,
    /// `<urls>` inside the manifest (rollbridge writes them when a floor lives elsewhere than
    /// the target); empty otherwise: the update check's `codebases` apply.
    pub codebases: Vec<String>,
    pub is_floor: bool,
    pub is_target: bool,
    pub floor_reason: String,
    pub packages: Vec<ParsedPackage>,
    pub postinstall: Option<PostinstallAction>,
}

/// One `<package>` of a parsed manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedPackage {
    pub name: String,
    pub hash: String,
    pub hash_sha256: String,
    pub size: String,
    pub required: bool,
}

// ---------------------------------------------------------------------------
// Streaming scanner shared by both parsers
// ---------------------------------------------------------------------------

/// What the parsers care about; everything else is validated and skipped here.
enum Step<'a> {
    /// An element opened at `depth` (root = 1); `empty` for `<x/>`.
    Open {
        elem: BytesStart<'a>,
        empty: bool,
        depth: usize,
    },
    Close,
    Done,
}

/// Wraps the quick-xml reader with the limits and structural checks both
/// documents need, so each parser is only a small context machine.
struct Scanner<'a> {
    /// The whole document (the reader's input).
    text: &'a str,
    reader: Reader<&'a [u8]>,
    depth: usize,
    seen_root: bool,
}

impl<'a> Scanner<'a> {
    fn new(body: &'a [u8]) -> Result<Self, ProtocolError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ProtocolError::TooLarge);
        }
        // Validating up front lets every later slice be treated as text, and
        // refuses documents that claim other encodings via their declaration.
        let text = std::str::from_utf8(body).map_err(|_| ProtocolError::NotUtf8)?;
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(true);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.allow_unmatched_ends = false;
        Ok(Self {
            text,
            reader,
            depth: 0,
            seen_root: false,
        })
    }

    fn malformed(&self, err: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Malformed(format!("{err} (at byte {})", self.reader.error_position()))
    }

    fn next(&mut self) -> Result<Step<'a>, ProtocolError> {
        loop {
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(err) => return Err(self.malformed(err)),
            };
            match event {
                Event::Start(elem) => {
                    let depth = self.open()?;
                    self.depth = depth;
                    return Ok(Step::Open {
                        elem,
                        empty: false,
                        depth,
                    });
                }
                Event::Empty(elem) => {
                    let depth = self.open()?;
                    return Ok(Step::Open {
                        elem,
                        empty: true,
                        depth,
                    });
                }
                Event::End(_) => {
                    // quick-xml already rejects unmatched and mismatched end tags.
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Step::Close);
                }
                // No DTD support at all: this is the entity-expansion defence.
                Event::DocType(_) => return Err(ProtocolError::DoctypeNotAllowed),
                Event::Text(text) => {
                    if self.depth == 0 && !text.is_empty() {
                        return Err(self.structural("text outside the root element"));
                    }
                }
                Event::CData(_) => {
                    if self.depth == 0 {
                        return Err(self.structural("CDATA outside the root element"));
                    }
                }
                Event::GeneralRef(reference) => {
                    if self.depth == 0 {
                        return Err(self.structural("entity reference outside the root element"));
                    }
                    check_reference(&reference)?;
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => {
                    if self.depth > 0 {
                        return Err(self.structural("document ends inside an open element"));
                    }
                    if !self.seen_root {
                        return Err(ProtocolError::Malformed(
                            "empty document: no root element".to_owned(),
                        ));
                    }
                    return Ok(Step::Done);
                }
            }
        }
    }

    /// Depth of a newly opened element, enforcing one root and [`MAX_DEPTH`].
    fn open(&mut self) -> Result<usize, ProtocolError> {
        if self.depth == 0 {
            if self.seen_root {
                return Err(self.structural("more than one root element"));
            }
            self.seen_root = true;
        }
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(ProtocolError::TooDeep);
        }
        Ok(depth)
    }

    fn structural(&self, what: &str) -> ProtocolError {
        ProtocolError::Malformed(format!(
            "{what} (at byte {})",
            self.reader.buffer_position()
        ))
    }
}

/// Text content is ignored, but an undeclared entity in it still means the
/// document is not well-formed (and was probably crafted).
fn check_reference(reference: &BytesRef<'_>) -> Result<(), ProtocolError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ProtocolError::Malformed(
                "bad character reference".to_owned(),
            )),
            Err(err) => Err(ProtocolError::Malformed(err.to_string())),
        };
    }
    let name = std::str::from_utf8(reference).map_err(|_| ProtocolError::NotUtf8)?;
    match resolve_predefined_entity(name) {
        Some(_) => Ok(()),
        None => Err(ProtocolError::Malformed(format!(
            "unknown entity &{};",
            truncate(name, 64)
        ))),
    }
}

/// Keeps attacker-chosen text in error messages (and so logs) short.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `part` as the slice of `text` it is, with `text`'s lifetime: quick-xml hands out slices of
/// its input, but typed with the lifetime of the event that carries them. `None` for any other
/// buffer (a bound and char-boundary check, no pointer is dereferenced).
fn within<'a>(text: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    text.get(start..start.checked_add(part.len())?)
}

/// Calls `f(local_name, unescaped_value)` for every attribute of `elem`, an element of `text`.
///
/// Every value is unescaped (borrowed from `text` when it holds no `&`), so an unknown entity
/// is an error even in attributes we ignore. Duplicate-attribute checking is off: it allocates
/// per element, and the last value wins.
fn for_each_attr<'a>(
    text: &'a str,
    elem: &BytesStart<'_>,
    mut f: impl FnMut(&[u8], Cow<'a, str>),
) -> Result<(), ProtocolError> {
    let Some(element) = within(text, elem) else {
        // Not a slice of the input (quick-xml copied it): the values are copied too.
        return for_each_attr_str(elem, |key, value| f(key, Cow::Owned(value.to_owned())));
    };
    let name_len = elem.name().as_ref().len();
    let mut attrs = Attributes::new(element, name_len);
    attrs.with_checks(false);
    for attr in attrs {
        let attr = attr.map_err(|err| ProtocolError::Malformed(format!("bad attribute: {err}")))?;
        // Values over a `&str` buffer are slices of it; a copy is handled all the same.
        let value = match attr.value {
            Cow::Borrowed(raw) => {
                let raw = std::str::from_utf8(raw).map_err(|_| ProtocolError::NotUtf8)?;
                unescape(raw).map_err(|err| attribute_error(attr.key.as_ref(), err))?
            }
            Cow::Owned(raw) => {
                let raw = String::from_utf8(raw).map_err(|_| ProtocolError::NotUtf8)?;
                let value =
                    unescape(&raw).map_err(|err| attribute_error(attr.key.as_ref(), err))?;
                Cow::Owned(value.into_owned())
            }
        };
        f(attr.key.local_name().as_ref(), value);
    }
    Ok(())
}

/// Calls `f(local_name, unescaped_value)` for every attribute of `elem` (values borrowed from
/// the element): [`for_each_attr`]'s rules, for documents whose fields are copied anyway.
fn for_each_attr_str(
    elem: &BytesStart<'_>,
    mut f: impl FnMut(&[u8], &str),
) -> Result<(), ProtocolError> {
    let mut attrs = elem.attributes();
    attrs.with_checks(false);
    for attr in attrs {
        let attr = attr.map_err(|err| ProtocolError::Malformed(format!("bad attribute: {err}")))?;
        let raw = std::str::from_utf8(&attr.value).map_err(|_| ProtocolError::NotUtf8)?;
        let value = unescape(raw).map_err(|err| attribute_error(attr.key.as_ref(), err))?;
        f(attr.key.local_name().as_ref(), &value);
    }
    Ok(())
}

fn attribute_error(key: &[u8], err: impl std::fmt::Display) -> ProtocolError {
    let key = String::from_utf8_lossy(key);
    ProtocolError::Malformed(format!("attribute {}: {err}", truncate(&key, 64)))
}

fn set_string(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

/// Lenient boolean, matching what Go's `encoding/xml` clients produce.
fn parse_bool(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("t")
}

fn parse_i32(value: &str) -> Option<i32> {
    value.trim().parse().ok()
}

/// Reads the root's `protocol` attribute and rejects anything but 3.0.
fn check_protocol(protocol: Option<Text<'_>>) -> Result<Text<'_>, ProtocolError> {
    match protocol {
        None => Err(ProtocolError::MissingProtocol),
        Some(p) if p == "3.0" => Ok(p),
        Some(p) => Err(ProtocolError::UnsupportedProtocol(
            truncate(&p, 64).to_owned(),
        )),
    }
}

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

/// Which open element we are inside, for the elements whose children matter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReqCtx {
    Request,
    App,
    Other,
}

/// Parses an Omaha v3 `<request>` body.
pub fn parse_request(body: &[u8]) -> Result<Request<'_>, ProtocolError> {
    let mut scanner = Scanner::new(body)?;
    let mut req = Request::default();
    let mut stack = [ReqCtx::Other; MAX_DEPTH];
    loop {
        let (elem, empty, depth) = match scanner.next()? {
            Step::Done => break,
            Step::Close => continue,
            Step::Open { elem, empty, depth } => (elem, empty, depth),
        };
        let parent = depth.checked_sub(2).and_then(|i| stack.get(i)).copied();
        let name = elem.local_name();
        let ctx = match (parent, name.as_ref()) {
            (None, b"request") => {
                read_request_attrs(scanner.text, &elem, &mut req)?;
                ReqCtx::Request
            }
            (None, _) => return Err(ProtocolError::NotARequest),
            (Some(ReqCtx::Request), b"os") => {
                // First <os> wins; a second one is as irrelevant as any unknown element.
                if req.os.is_none() {
                    req.os = Some(read_os(scanner.text, &elem)?);
                }
                ReqCtx::Other
            }
            (Some(ReqCtx::Request), b"app") => {
                if req.apps.len() >= MAX_APPS {
                    return Err(ProtocolError::TooManyApps);
                }
                req.apps.push(read_app(scanner.text, &elem)?);
                ReqCtx::App
            }
            (Some(ReqCtx::App), child) => {
                if let Some(app) = req.apps.last_mut() {
                    match child {
                        b"ping" => app.ping = true,
                        b"updatecheck" => app.update_check = true,
                        b"event" => {
                            if app.events.len() >= MAX_EVENTS_PER_APP {
                                return Err(ProtocolError::TooManyEvents);
                            }
                            app.events.push(read_event(scanner.text, &elem)?);
                        }
                        _ => {}
                    }
                }
                ReqCtx::Other
            }
            _ => ReqCtx::Other,
        };
        if !empty {
            if let Some(slot) = stack.get_mut(depth - 1) {
                *slot = ctx;
            }
        }
    }
    Ok(req)
}

fn read_request_attrs<'a>(
    text: &'a str,
    elem: &BytesStart<'_>,
    req: &mut Request<'a>,
) -> Result<(), ProtocolError> {
    let mut protocol = None;
    for_each_attr(text, elem, |key, value| match key {
        b"protocol" => protocol = Some(value),
        b"version" => req.version = value,
        b"updaterversion" => req.updater_version = value,
        b"installsource" => req.install_source = value,
        b"ismachine" => req.is_machine = value,
        _ => {}
    })?;
    req.protocol = check_protocol(protocol)?;
    Ok(())
}

fn read_os<'a>(text: &'a str, elem: &BytesStart<'_>) -> Result<Os<'a>, ProtocolError> {
    let mut os = Os::default();
    for_each_attr(text, elem, |key, value| match key {
        b"platform" => os.platform = value,
        b"version" => os.version = value,
        b"sp" => os.sp = value,
        b"arch" => os.arch = value,
        _ => {}
    })?;
    Ok(os)
}

fn read_app<'a>(text: &'a str, elem: &BytesStart<'_>) -> Result<AppRequest<'a>, ProtocolError> {
    let mut app = AppRequest::default();
    for_each_attr(text, elem, |key, value| match key {
        b"appid" => app.appid = value,
        b"version" => app.version = value,
        b"track" => app.track = value,
        b"machineid" => app.machine_id = value,
        b"bootid" => app.boot_id = value,
        b"oem" => app.oem = value,
        b"oemversion" => app.oem_version = value,
        b"alephversion" => app.aleph_version = value,
        b"board" => app.board = value,
        b"machinealias" => app.machine_alias = value,
        b"lang" => app.lang = value,
        b"multi_manifest_ok" => app.multi_manifest_ok = parse_bool(&value),
        _ => {}
    })?;
    Ok(app)
}

fn read_event<'a>(text: &'a str, elem: &BytesStart<'_>) -> Result<EventRequest<'a>, ProtocolError> {
    let mut event = EventRequest::default();
    for_each_attr(text, elem, |key, value| match key {
        b"eventtype" => event.event_type = parse_i32(&value),
        b"eventresult" => event.event_result = parse_i32(&value),
        b"previousversion" => event.previous_version = value,
        b"errorcode" => event.error_code = value,
        _ => {}
    })?;
    Ok(event)
}

// ---------------------------------------------------------------------------
// Response serialization
// ---------------------------------------------------------------------------

impl Response<'_> {
    /// Serializes to the exact one-line shape CoreRoller emitted.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(self.estimated_len());
        self.write_into(&mut out);
        out
    }

    /// Appends the serialized document to `out` (lets callers reuse buffers).
    pub fn write_into(&self, out: &mut String) {
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response protocol=\"3.0\" server=\"",
        );
        out.push_str(SERVER_NAME);
        out.push_str("\"><daystart elapsed_seconds=\"0\"/>");
        for app in &self.apps {
            app.write_into(out);
        }
        out.push_str("</response>");
    }

    fn estimated_len(&self) -> usize {
        let apps: usize = self
            .apps
            .iter()
            .map(|app| {
                let manifest = match &app.update_check {
                    Some(UpdateCheck {
                        manifest: Some(m), ..
                    }) => 640 + m.codebase.len() + m.package_name.len(),
                    _ => 64,
                };
                96 + app.appid.len() + app.status.len() + app.events * 22 + manifest
            })
            .sum();
        128 + apps
    }
}

impl AppResponse<'_> {
    fn write_into(&self, out: &mut String) {
        out.push_str("<app");
        push_attr(out, "appid", &self.appid);
        push_attr(out, "status", self.status);
        // Always an explicit close tag, even when empty, so the shape never varies.
        out.push('>');
        if self.ping {
            out.push_str("<ping status=\"ok\"/>");
        }
        if let Some(check) = &self.update_check {
            check.write_into(out);
        }
        for _ in 0..self.events {
            out.push_str("<event status=\"ok\"/>");
        }
        out.push_str("</app>");
    }
}

impl UpdateCheck {
    fn write_into(&self, out: &mut String) {
        out.push_str("<updatecheck");
        push_attr(out, "status", self.status);
        if let Some(secs) = self.poll_interval {
            out.push_str(" PollInterval=\"");
            out.push_str(&secs.to_string());
            out.push('"');
        }
        if let Some(target) = self.manifests.last() {
            // One shared <urls> (the target's, as Nebraska writes it); a floor whose payload
            // lives elsewhere carries its own <urls> inside its <manifest>.
            let shared = &target.manifest.codebase;
            out.push_str("><urls><url");
            push_attr(out, "codebase", shared);
            out.push_str("/></urls>");
            for marked in &self.manifests {
                write_manifest(out, &marked.manifest, Some(marked), shared);
            }
            out.push_str("</updatecheck>");
            return;
        }
        let Some(m) = &self.manifest else {
            out.push_str("/>");
            return;
        };
        out.push_str("><urls><url");
        push_attr(out, "codebase", &m.codebase);
        out.push_str("/></urls>");
        write_manifest(out, m, None, &m.codebase);
        out.push_str("</updatecheck>");
    }
}

fn write_manifest(out: &mut String, m: &Manifest, marks: Option<&MarkedManifest>, shared: &str) {
    out.push_str("<manifest");
    push_attr(out, "version", &m.version);
    if let Some(marks) = marks {
        if marks.is_floor {
            out.push_str(" is_floor=\"true\"");
            push_attr(out, "floor_reason", &marks.floor_reason);
        }
        if marks.is_target {
            out.push_str(" is_target=\"true\"");
        }
    }
    out.push('>');
    if m.codebase != shared {
        out.push_str("<urls><url");
        push_attr(out, "codebase", &m.codebase);
        out.push_str("/></urls>");
    }
    out.push_str("<packages><package");
    push_attr(out, "name", &m.package_name);
    push_attr(out, "hash", &m.package_hash);
    push_attr(out, "size", &m.package_size);
    out.push_str(" required=\"true\"/></packages>");
    if let Some(action) = &m.action {
        out.push_str("<actions>");
        action.write_into(out);
        out.push_str("</actions>");
    }
    out.push_str("</manifest>");
}

impl PostinstallAction {
    fn write_into(&self, out: &mut String) {
        out.push_str("<action event=\"postinstall\"");
        if !self.chromeos_version.is_empty() {
            push_attr(out, "ChromeOSVersion", &self.chromeos_version);
        }
        push_attr(out, "sha256", &self.sha256);
        push_attr(out, "needsadmin", bool_str(self.needs_admin));
        push_attr(out, "IsDelta", bool_str(self.is_delta));
        if self.is_delta {
            // Newer update_engine builds read IsDeltaPayload instead of IsDelta.
            out.push_str(" IsDeltaPayload=\"true\"");
        }
        if self.disable_payload_backoff {
            out.push_str(" DisablePayloadBackoff=\"true\"");
        }
        for (name, value) in [
            ("MetadataSignatureRsa", &self.metadata_signature_rsa),
            ("MetadataSize", &self.metadata_size),
            ("deadline", &self.deadline),
        ] {
            if !value.is_empty() {
                push_attr(out, name, value);
            }
        }
        out.push_str("/>");
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Appends ` name="value"` with `value` escaped.
fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// XML-escapes `s` into `out`. Tabs and newlines become character references
/// so attribute-value normalization cannot alter them; characters XML 1.0
/// cannot carry at all become U+FFFD rather than producing an unparsable reply.
fn push_escaped(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            '\t' => "&#9;",
            '\n' => "&#10;",
            '\r' => "&#13;",
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => "\u{fffd}",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(replacement);
        last = i + c.len_utf8();
    }
    out.push_str(&s[last..]);
}

// ---------------------------------------------------------------------------
// Response parsing
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum RespCtx {
    Response,
    App,
    UpdateCheck,
    Urls,
    Manifest,
    ManifestUrls,
    Packages,
    Actions,
    Other,
}

/// Parse a response document (used by rollbridge's own Omaha clients: the
/// Docker agent and the upstream syncer, and by tests).
pub fn parse_response(body: &[u8]) -> Result<ParsedResponse, ProtocolError> {
    let mut scanner = Scanner::new(body)?;
    let mut resp = ParsedResponse::default();
    let mut stack = [RespCtx::Other; MAX_DEPTH];
    loop {
        let (elem, empty, depth) = match scanner.next()? {
            Step::Done => break,
            Step::Close => continue,
            Step::Open { elem, empty, depth } => (elem, empty, depth),
        };
        let parent = depth.checked_sub(2).and_then(|i| stack.get(i)).copied();
        let name = elem.local_name();
        let ctx = match (parent, name.as_ref()) {
            (None, b"response") => {
                let mut protocol = None;
                for_each_attr_str(&elem, |key, value| {
                    if key == b"protocol" {
                        protocol = Some(Cow::Owned(value.to_owned()));
                    }
                })?;
                check_protocol(protocol)?;
                RespCtx::Response
            }
            (None, other) => {
                return Err(ProtocolError::Malformed(format!(
                    "root element is <{}>, expected <response>",
                    truncate(&String::from_utf8_lossy(other), 64)
                )))
            }
            (Some(RespCtx::Response), b"app") => {
                if resp.apps.len() >= MAX_APPS {
                    return Err(ProtocolError::TooManyApps);
                }
                let mut app = ParsedApp::default();
                for_each_attr_str(&elem, |key, value| match key {
                    b"appid" => set_string(&mut app.appid, value),
                    b"status" => set_string(&mut app.status, value),
                    _ => {}
                })?;
                resp.apps.push(app);
                RespCtx::App
            }
            (Some(RespCtx::App), child) => match resp.apps.last_mut() {
                Some(app) => read_response_app_child(&elem, child, app)?,
                None => RespCtx::Other,
            },
            (Some(parent), child) => {
                let check = resp
                    .apps
                    .last_mut()
                    .and_then(|app| app.update_check.as_mut());
                match check {
                    Some(check) => read_update_check_child(&elem, parent, child, check)?,
                    None => RespCtx::Other,
                }
            }
        };
        if !empty {
            if let Some(slot) = stack.get_mut(depth - 1) {
                *slot = ctx;
            }
        }
    }
    Ok(resp)
}

fn read_response_app_child(
    elem: &BytesStart<'_>,
    name: &[u8],
    app: &mut ParsedApp,
) -> Result<RespCtx, ProtocolError> {
    match name {
        b"ping" => {
            app.ping_status = Some(read_status(elem)?);
            Ok(RespCtx::Other)
        }
        b"event" => {
            if app.event_statuses.len() >= MAX_EVENTS_PER_APP {
                return Err(ProtocolError::TooManyEvents);
            }
            app.event_statuses.push(read_status(elem)?);
            Ok(RespCtx::Other)
        }
        b"updatecheck" => {
            let mut check = ParsedUpdateCheck::default();
            for_each_attr_str(elem, |key, value| match key {
                b"status" => set_string(&mut check.status, value),
                b"PollInterval" => check.poll_interval = value.trim().parse().ok(),
                _ => {}
            })?;
            app.update_check = Some(check);
            Ok(RespCtx::UpdateCheck)
        }
        _ => Ok(RespCtx::Other),
    }
}

/// Children of `<updatecheck>` and below; `parent` says which level we are at.
fn read_update_check_child(
    elem: &BytesStart<'_>,
    parent: RespCtx,
    name: &[u8],
    check: &mut ParsedUpdateCheck,
) -> Result<RespCtx, ProtocolError> {
    Ok(match (parent, name) {
        (RespCtx::UpdateCheck, b"urls") => RespCtx::Urls,
        (RespCtx::Urls, b"url") => {
            if check.codebases.len() >= MAX_MANIFESTS {
                return Err(ProtocolError::TooManyManifests);
            }
            check.codebases.push(read_codebase(elem)?);
            RespCtx::Other
        }
        (RespCtx::Manifest, b"urls") => RespCtx::ManifestUrls,
        (RespCtx::ManifestUrls, b"url") => {
            let codebase = read_codebase(elem)?;
            if let Some(manifest) = check.manifests.last_mut() {
                if manifest.codebases.len() >= MAX_MANIFESTS {
                    return Err(ProtocolError::TooManyManifests);
                }
                manifest.codebases.push(codebase);
            }
            RespCtx::Other
        }
        (RespCtx::UpdateCheck, b"manifest") => {
            if check.manifests.len() >= MAX_MANIFESTS {
                return Err(ProtocolError::TooManyManifests);
            }
            let mut manifest = ParsedManifest::default();
            for_each_attr_str(elem, |key, value| match key {
                b"version" => set_string(&mut manifest.version, value),
                b"is_floor" => manifest.is_floor = parse_bool(value),
                b"is_target" => manifest.is_target = parse_bool(value),
                b"floor_reason" => set_string(&mut manifest.floor_reason, value),
                _ => {}
            })?;
            check.manifests.push(manifest);
            RespCtx::Manifest
        }
        (RespCtx::Manifest, b"packages") => RespCtx::Packages,
        (RespCtx::Manifest, b"actions") => RespCtx::Actions,
        (RespCtx::Packages, b"package") => {
            let mut package = ParsedPackage::default();
            for_each_attr_str(elem, |key, value| match key {
                b"name" => set_string(&mut package.name, value),
                b"hash" => set_string(&mut package.hash, value),
                b"hash_sha256" => set_string(&mut package.hash_sha256, value),
                b"size" => set_string(&mut package.size, value),
                b"required" => package.required = parse_bool(value),
                _ => {}
            })?;
            if let Some(manifest) = check.manifests.last_mut() {
                manifest.packages.push(package);
            }
            RespCtx::Other
        }
        (RespCtx::Actions, b"action") => {
            if let Some(action) = read_action(elem)? {
                if let Some(manifest) = check.manifests.last_mut() {
                    manifest.postinstall = Some(action);
                }
            }
            RespCtx::Other
        }
        _ => RespCtx::Other,
    })
}

fn read_codebase(elem: &BytesStart<'_>) -> Result<String, ProtocolError> {
    let mut codebase = String::new();
    for_each_attr_str(elem, |key, value| {
        if key == b"codebase" {
            set_string(&mut codebase, value);
        }
    })?;
    Ok(codebase)
}

fn read_status(elem: &BytesStart<'_>) -> Result<String, ProtocolError> {
    let mut status = String::new();
    for_each_attr_str(elem, |key, value| {
        if key == b"status" {
            set_string(&mut status, value);
        }
    })?;
    Ok(status)
}

/// Returns the action only when it is the update_engine postinstall one.
fn read_action(elem: &BytesStart<'_>) -> Result<Option<PostinstallAction>, ProtocolError> {
    let mut action = PostinstallAction::default();
    let mut is_postinstall = false;
    let mut display_version = String::new();
    for_each_attr_str(elem, |key, value| match key {
        b"event" => is_postinstall = value == "postinstall",
        b"sha256" => set_string(&mut action.sha256, value),
        b"needsadmin" => action.needs_admin = parse_bool(value),
        b"IsDelta" | b"IsDeltaPayload" => action.is_delta |= parse_bool(value),
        b"DisablePayloadBackoff" => action.disable_payload_backoff = parse_bool(value),
        b"ChromeOSVersion" => set_string(&mut action.chromeos_version, value),
        // go-omaha servers name the same thing DisplayVersion.
        b"DisplayVersion" => set_string(&mut display_version, value),
        b"MetadataSignatureRsa" => set_string(&mut action.metadata_signature_rsa, value),
        b"MetadataSize" => set_string(&mut action.metadata_size, value),
        b"deadline" => set_string(&mut action.deadline, value),
        _ => {}
    })?;
    if action.chromeos_version.is_empty() {
        action.chromeos_version = display_version;
    }
    Ok(is_postinstall.then_some(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COREOS_APPID: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";

    /// Shape of a real Flatcar update_engine first-boot request.
    const FLATCAR_BOOT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="2191.5.0_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="2191.5.0" track="stable" bootid="7a1d4c62-0f3b-4e5a-9c8d-2b6e1f0a3d47" oem="qemu" oemversion="0.0.2" alephversion="2191.0.0" machineid="8f14e45fceea167a5a36dedd4bea2543" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >
        <ping active="1" a="-1" r="-1"></ping>
        <updatecheck targetversionprefix=""></updatecheck>
        <event eventtype="3" eventresult="2" previousversion="0.0.0.0"></event>
    </app>
</request>
"#;

    fn app(appid: &str) -> AppRequest<'static> {
        AppRequest {
            appid: appid.to_owned().into(),
            ..AppRequest::default()
        }
    }

    fn event(t: i32, r: i32, prev: &str) -> EventRequest<'static> {
        EventRequest {
            event_type: Some(t),
            event_result: Some(r),
            previous_version: prev.to_owned().into(),
            error_code: "".into(),
        }
    }

    fn malformed(result: Result<Request<'_>, ProtocolError>) -> String {
        match result {
            Err(ProtocolError::Malformed(msg)) => msg,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn flatcar_update_engine_request_parses_exactly() {
        let req = parse_request(FLATCAR_BOOT.as_bytes()).unwrap();
        let expected = Request {
            protocol: "3.0".into(),
            version: "update_engine-0.4.10".into(),
            updater_version: "update_engine-0.4.10".into(),
            install_source: "scheduler".into(),
            is_machine: "1".into(),
            os: Some(Os {
                platform: "CoreOS".into(),
                version: "Chateau".into(),
                sp: "2191.5.0_x86_64".into(),
                arch: "".into(),
            }),
            apps: vec![AppRequest {
                appid: COREOS_APPID.into(),
                version: "2191.5.0".into(),
                track: "stable".into(),
                machine_id: "8f14e45fceea167a5a36dedd4bea2543".into(),
                boot_id: "7a1d4c62-0f3b-4e5a-9c8d-2b6e1f0a3d47".into(),
                oem: "qemu".into(),
                oem_version: "0.0.2".into(),
                aleph_version: "2191.0.0".into(),
                board: "amd64-usr".into(),
                machine_alias: "".into(),
                lang: "en-US".into(),
                multi_manifest_ok: false,
                ping: true,
                update_check: true,
                events: vec![event(3, 2, "0.0.0.0")],
            }],
        };
        assert_eq!(req, expected);
        assert_eq!(
            req.apps[0].normalized_appid(),
            "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
        );
    }

    #[test]
    fn updateservicectl_fake_client_request_parses() {
        let body = concat!(
            r#"<request protocol="3.0"><os version="lsb" platform="CoreOS"/>"#,
            r#"<app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57" version="0.0.0" "#,
            r#"track="9a2deb70-37be-4026-853f-bfdd6b347bbe" bootid="0f5c3b2a-6d1e-4a8f-b7c9-2e4d6f8a0b1c" "#,
            r#"machineid="deadbeefdeadbeefdeadbeefdeadbeef" oem="fakeclient">"#,
            r#"<updatecheck/><event eventtype="3" eventresult="2"/></app></request>"#
        );
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.protocol, "3.0");
        assert_eq!(req.version, "");
        assert_eq!(req.is_machine, "");
        assert_eq!(
            req.os,
            Some(Os {
                platform: "CoreOS".into(),
                version: "lsb".into(),
                ..Os::default()
            })
        );
        let expected = AppRequest {
            version: "0.0.0".into(),
            track: "9a2deb70-37be-4026-853f-bfdd6b347bbe".into(),
            boot_id: "0f5c3b2a-6d1e-4a8f-b7c9-2e4d6f8a0b1c".into(),
            machine_id: "deadbeefdeadbeefdeadbeefdeadbeef".into(),
            oem: "fakeclient".into(),
            update_check: true,
            events: vec![event(3, 2, "")],
            ..app("e96281a6-d1af-4bde-9a0a-97b76e56dc57")
        };
        assert_eq!(req.apps, vec![expected]);
    }

    #[test]
    fn google_omaha_multi_app_request_keeps_order() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="1.3.33.7" ismachine="0" sessionid="{5FAD27D4-6BFA-4BEB-ABCD-8D0C0B1FA1A5}" userid="{A5CA1A9C-9B32-4D5F-8B0E-7C3D2A1F0E9B}" installsource="scheduler" testsource="ossdev" requestid="{C8F7A3E1-2B4D-4F6A-9E8C-1D3B5A7F9E2C}">
  <hw physmemory="16" sse="1" sse2="1"/>
  <os platform="win" version="10.0.19045.3930" sp="" arch="x64"/>
  <app appid="{430FD4D0-B729-4F61-AA34-91526481799D}" version="1.3.33.7" nextversion="" lang="en" brand="GGLS" client="someclient" installage="39">
    <updatecheck/>
    <ping r="1"/>
  </app>
  <app appid="{8A69D345-D564-463C-AFF1-A69D9E530F96}" version="120.0.6099.130" nextversion="" lang="de" brand="GGLS" client="" installage="6" cohort="1:gu:">
    <updatecheck targetversionprefix=""/>
    <ping r="1" rd="6200" ping_freshness="{0E9F2C7A-1B3D-4E5F-8A9B-0C1D2E3F4A5B}"/>
  </app>
</request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.version, "1.3.33.7");
        assert_eq!(req.is_machine, "0");
        assert_eq!(req.install_source, "scheduler");
        assert_eq!(req.os.as_ref().map(|os| &*os.arch), Some("x64"));
        assert_eq!(req.os.as_ref().map(|os| &*os.platform), Some("win"));
        let ids: Vec<&str> = req.apps.iter().map(|a| &*a.appid).collect();
        assert_eq!(
            ids,
            [
                "{430FD4D0-B729-4F61-AA34-91526481799D}",
                "{8A69D345-D564-463C-AFF1-A69D9E530F96}"
            ]
        );
        assert_eq!(req.apps[1].lang, "de");
        assert_eq!(req.apps[1].version, "120.0.6099.130");
        assert!(req
            .apps
            .iter()
            .all(|a| a.ping && a.update_check && a.events.is_empty()));
        assert_eq!(
            req.apps[0].normalized_appid(),
            "430fd4d0-b729-4f61-aa34-91526481799d"
        );
    }

    #[test]
    fn event_only_request() {
        let body = r#"<request protocol="3.0" version="update_engine-0.4.10"><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="2191.0.0" track="stable" machineid="0123456789abcdef0123456789abcdef"><event eventtype="13" eventresult="1"></event><event eventtype="3" eventresult="0" errorcode="268437959"/></app></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        let a = &req.apps[0];
        assert!(!a.ping && !a.update_check);
        assert_eq!(a.events.len(), 2);
        assert_eq!(a.events[0], event(13, 1, ""));
        assert_eq!(
            a.events[1],
            EventRequest {
                error_code: "268437959".into(),
                ..event(3, 0, "")
            }
        );
    }

    #[test]
    fn ping_only_request() {
        let body = r#"<request protocol="3.0"><app appid="{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}" version="2191.0.0"><ping active="1" a="-1" r="-1" status="1"/></app></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.os, None);
        let a = &req.apps[0];
        assert!(a.ping && !a.update_check && a.events.is_empty());
        assert_eq!(a.appid, "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}");
        assert_eq!(a.normalized_appid(), "e96281a6-d1af-4bde-9a0a-97b76e56dc57");
    }

    #[test]
    fn bad_event_numbers_become_none() {
        let body = r#"<request protocol="3.0"><app appid="x"><event eventtype="three" errorcode="0x10"/><event eventresult="99999999999"/></app></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        let events = &req.apps[0].events;
        assert_eq!(events[0].event_type, None);
        assert_eq!(events[0].event_result, None);
        assert_eq!(events[0].error_code, "0x10");
        assert_eq!(events[1].event_type, None);
        assert_eq!(events[1].event_result, None);
    }

    #[test]
    fn unknown_and_misplaced_elements_are_ignored() {
        let body = r#"<request protocol="3.0"><ping/><updatecheck/><event eventtype="1"/>
            <extra><app appid="hidden"><ping/></app></extra>
            <app appid="a" multi_manifest_ok="true">text &amp; more<!-- c --><![CDATA[x]]>
              <data name="install" index="verboselogging"/>
              <wrapper><ping/><event eventtype="3"/></wrapper>
              <updatecheck><extra><ping/></extra></updatecheck>
            </app></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.apps.len(), 1);
        let a = &req.apps[0];
        assert_eq!(a.appid, "a");
        assert!(a.multi_manifest_ok);
        assert!(a.update_check);
        assert!(
            !a.ping,
            "pings nested below <app>'s children are not app pings"
        );
        assert!(a.events.is_empty());
    }

    #[test]
    fn attribute_entities_are_unescaped() {
        let body = r#"<request protocol="3.0"><app appid="{a&amp;b&#x41;&lt;}" lang="&quot;x&apos;"/></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!(req.apps[0].appid, "{a&bA<}");
        assert_eq!(req.apps[0].lang, "\"x'");
        assert!(!req.apps[0].ping);
    }

    #[test]
    fn plain_values_are_borrowed_from_the_body() {
        let body = r#"<request protocol="3.0" version="ue"><os platform="CoreOS"/><app appid="{a}" version="1.0" track="s&amp;t" machineid="m"><event eventtype="3" eventresult="1" previousversion="0.9"/></app></request>"#;
        let req = parse_request(body.as_bytes()).unwrap();
        let app = &req.apps[0];
        for text in [
            &req.protocol,
            &req.version,
            &req.os.as_ref().unwrap().platform,
            &app.appid,
            &app.version,
            &app.machine_id,
            &app.events[0].previous_version,
        ] {
            assert!(matches!(text, Cow::Borrowed(_)), "{text} copied");
        }
        assert!(matches!(app.track, Cow::Owned(_)), "unescaped");
        assert_eq!(app.track, "s&t");
        let owned: Request<'static> = req.clone().into_owned();
        assert_eq!(owned, req);
    }

    #[test]
    fn self_closing_root_and_bom() {
        let req = parse_request("\u{feff}<request protocol=\"3.0\"/>".as_bytes()).unwrap();
        assert_eq!(req.protocol, "3.0");
        assert!(req.apps.is_empty());
    }

    #[test]
    fn hostile_documents_are_rejected() {
        // Malformed / truncated.
        malformed(parse_request(b"<request protocol=\"3.0\"><app></request>"));
        malformed(parse_request(
            b"<request protocol=\"3.0\"><app appid=\"x\">",
        ));
        malformed(parse_request(b"<request protocol=\"3.0\"><app appid=\"x"));
        malformed(parse_request(
            b"<request protocol=\"3.0\"><app appid=x/></request>",
        ));
        malformed(parse_request(
            b"<request protocol=\"3.0\"></request></request>",
        ));
        malformed(parse_request(
            b"<request protocol=\"3.0\"/><request protocol=\"3.0\"/>",
        ));
        malformed(parse_request(b"junk<request protocol=\"3.0\"/>"));
        malformed(parse_request(
            b"<request protocol=\"3.0\"><a>&xxe;</a></request>",
        ));
        assert!(malformed(parse_request(b"")).contains("no root element"));
        assert!(malformed(parse_request(b"  \n ")).contains("no root element"));

        // Billion laughs: refused at the DOCTYPE, nothing is ever expanded.
        let lol = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<request protocol="3.0" version="&lol3;"><app appid="&lol3;"/></request>"#;
        assert_eq!(parse_request(lol), Err(ProtocolError::DoctypeNotAllowed));
        assert_eq!(
            parse_request(
                b"<!DOCTYPE request SYSTEM \"file:///etc/passwd\"><request protocol=\"3.0\"/>"
            ),
            Err(ProtocolError::DoctypeNotAllowed)
        );

        // Undeclared entity in an attribute (known or ignored) is never expanded.
        let msg = malformed(parse_request(
            br#"<request protocol="3.0"><app appid="&xxe;"/></request>"#,
        ));
        assert!(msg.contains("xxe"), "{msg}");
        malformed(parse_request(br#"<request protocol="3.0" brand="&xxe;"/>"#));

        // Limits.
        let apps = "<app appid=\"x\"/>".repeat(MAX_APPS + 1);
        let body = format!("<request protocol=\"3.0\">{apps}</request>");
        assert_eq!(
            parse_request(body.as_bytes()),
            Err(ProtocolError::TooManyApps)
        );
        let apps = "<app appid=\"x\"/>".repeat(MAX_APPS);
        let body = format!("<request protocol=\"3.0\">{apps}</request>");
        assert_eq!(parse_request(body.as_bytes()).unwrap().apps.len(), MAX_APPS);

        let events = "<event eventtype=\"3\" eventresult=\"2\"/>".repeat(MAX_EVENTS_PER_APP + 1);
        let body = format!("<request protocol=\"3.0\"><app appid=\"x\">{events}</app></request>");
        assert_eq!(
            parse_request(body.as_bytes()),
            Err(ProtocolError::TooManyEvents)
        );
        let events = "<event eventtype=\"3\" eventresult=\"2\"/>".repeat(MAX_EVENTS_PER_APP);
        let body = format!("<request protocol=\"3.0\"><app appid=\"x\">{events}</app></request>");
        assert_eq!(
            parse_request(body.as_bytes()).unwrap().apps[0].events.len(),
            MAX_EVENTS_PER_APP
        );

        let body = format!(
            "<request protocol=\"3.0\">{}{}</request>",
            "<a>".repeat(39),
            "</a>".repeat(39)
        );
        assert_eq!(parse_request(body.as_bytes()), Err(ProtocolError::TooDeep));
        let body = format!("<request protocol=\"3.0\">{}", "<a>".repeat(100_000 / 3));
        assert_eq!(parse_request(body.as_bytes()), Err(ProtocolError::TooLarge));
        // Exactly MAX_DEPTH levels (root included) is fine, one more (even empty) is not.
        let ok = format!(
            "<request protocol=\"3.0\">{}<b/>{}</request>",
            "<a>".repeat(MAX_DEPTH - 2),
            "</a>".repeat(MAX_DEPTH - 2)
        );
        assert!(parse_request(ok.as_bytes()).is_ok());
        let deep = format!(
            "<request protocol=\"3.0\">{}<b/>{}</request>",
            "<a>".repeat(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(parse_request(deep.as_bytes()), Err(ProtocolError::TooDeep));

        assert_eq!(
            parse_request(b"<request protocol=\"3.0\">\xff</request>"),
            Err(ProtocolError::NotUtf8)
        );
        let big = format!(
            "<request protocol=\"3.0\" version=\"{}\"/>",
            "x".repeat(MAX_BODY_BYTES)
        );
        assert_eq!(parse_request(big.as_bytes()), Err(ProtocolError::TooLarge));

        // Protocol and root checks.
        assert_eq!(
            parse_request(b"<request protocol=\"2.0\"/>"),
            Err(ProtocolError::UnsupportedProtocol("2.0".into()))
        );
        assert_eq!(
            parse_request(b"<request version=\"1\"><app appid=\"x\"/></request>"),
            Err(ProtocolError::MissingProtocol)
        );
        assert_eq!(
            parse_request(b"<foo protocol=\"3.0\"></foo>"),
            Err(ProtocolError::NotARequest)
        );
        assert_eq!(
            parse_request(b"<response protocol=\"3.0\"/>"),
            Err(ProtocolError::NotARequest)
        );
    }

    #[test]
    fn truncation_at_every_offset_never_panics() {
        let body = FLATCAR_BOOT.as_bytes();
        let mut ok = 0;
        for end in 0..=body.len() {
            if parse_request(&body[..end]).is_ok() {
                ok += 1;
            }
        }
        // Only cuts within the trailing newline after </request> still parse.
        assert_eq!(ok, 2);
        for end in 0..=body.len() {
            let _ = parse_response(&body[..end]);
        }
    }

    #[test]
    fn error_messages_are_human() {
        assert_eq!(
            ProtocolError::TooLarge.to_string(),
            "body is larger than 65536 bytes"
        );
        assert_eq!(
            ProtocolError::UnsupportedProtocol("2.0".into()).to_string(),
            "unsupported Omaha protocol version \"2.0\" (only \"3.0\" is supported)"
        );
        assert_eq!(
            ProtocolError::NotARequest.to_string(),
            "root element is not <request>"
        );
    }

    // ----- responses -----

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

    fn resp_app(appid: &str, status: &'static str) -> AppResponse<'static> {
        AppResponse {
            appid: appid.to_owned().into(),
            status,
            ..AppResponse::default()
        }
    }

    fn coreos_manifest() -> Manifest {
        Manifest {
            codebase: "https://pkgs.example/1122.2.0/".into(),
            version: "1122.2.0".into(),
            package_name: "update.gz".into(),
            package_hash: "+ZFmPWzv1OdfmKHaGSojbK5Xj3k=".into(),
            package_size: "212555113".into(),
            action: Some(PostinstallAction {
                sha256: "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=".into(),
                needs_admin: false,
                is_delta: false,
                disable_payload_backoff: true,
                ..PostinstallAction::default()
            }),
        }
    }

    #[test]
    fn serialize_noupdate_with_ping_and_events() {
        let resp = Response {
            apps: vec![AppResponse {
                ping: true,
                update_check: Some(UpdateCheck {
                    manifests: Vec::new(),
                    status: "noupdate",
                    poll_interval: None,
                    manifest: None,
                }),
                events: 2,
                ..resp_app(COREOS_APPID, "ok")
            }],
        };
        assert_eq!(
            resp.to_xml(),
            format!(
                "{DECL}<response protocol=\"3.0\" server=\"rollbridge\"><daystart elapsed_seconds=\"0\"/><app appid=\"{COREOS_APPID}\" status=\"ok\"><ping status=\"ok\"/><updatecheck status=\"noupdate\"/><event status=\"ok\"/><event status=\"ok\"/></app></response>"
            )
        );
        // write_into appends rather than replacing.
        let mut buf = String::from("X");
        resp.write_into(&mut buf);
        assert_eq!(buf, format!("X{}", resp.to_xml()));
    }

    #[test]
    fn serialize_error_apps_and_empty_response() {
        // An app without children keeps an explicit close tag (never `<app .../>`).
        let resp = Response {
            apps: vec![
                resp_app("{unknown}", "error-unknownApplication"),
                AppResponse {
                    update_check: Some(UpdateCheck {
                        manifests: Vec::new(),
                        status: "error-internal",
                        poll_interval: None,
                        manifest: None,
                    }),
                    ..resp_app(COREOS_APPID, "error-failedToRetrieveUpdatePackageInfo")
                },
            ],
        };
        assert_eq!(
            resp.to_xml(),
            format!(
                "{DECL}<response protocol=\"3.0\" server=\"rollbridge\"><daystart elapsed_seconds=\"0\"/><app appid=\"{{unknown}}\" status=\"error-unknownApplication\"></app><app appid=\"{COREOS_APPID}\" status=\"error-failedToRetrieveUpdatePackageInfo\"><updatecheck status=\"error-internal\"/></app></response>"
            )
        );
        assert_eq!(
            Response::default().to_xml(),
            format!("{DECL}<response protocol=\"3.0\" server=\"rollbridge\"><daystart elapsed_seconds=\"0\"/></response>")
        );
    }

    #[test]
    fn serialize_ok_with_manifest_and_action() {
        let resp = Response {
            apps: vec![AppResponse {
                update_check: Some(UpdateCheck {
                    manifests: Vec::new(),
                    status: "ok",
                    poll_interval: None,
                    manifest: Some(coreos_manifest()),
                }),
                ..resp_app(COREOS_APPID, "ok")
            }],
        };
        let check = r#"<updatecheck status="ok"><urls><url codebase="https://pkgs.example/1122.2.0/"/></urls><manifest version="1122.2.0"><packages><package name="update.gz" hash="+ZFmPWzv1OdfmKHaGSojbK5Xj3k=" size="212555113" required="true"/></packages><actions><action event="postinstall" sha256="cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=" needsadmin="false" IsDelta="false" DisablePayloadBackoff="true"/></actions></manifest></updatecheck>"#;
        assert_eq!(
            resp.to_xml(),
            format!(
                "{DECL}<response protocol=\"3.0\" server=\"rollbridge\"><daystart elapsed_seconds=\"0\"/><app appid=\"{COREOS_APPID}\" status=\"ok\">{check}</app></response>"
            )
        );
    }

    #[test]
    fn serialize_full_action_attribute_order() {
        let action = PostinstallAction {
            sha256: "abc=".into(),
            needs_admin: true,
            is_delta: true,
            disable_payload_backoff: false,
            chromeos_version: "1122.2.0".into(),
            metadata_signature_rsa: "sig".into(),
            metadata_size: "1234".into(),
            deadline: "now".into(),
        };
        let mut out = String::new();
        action.write_into(&mut out);
        assert_eq!(
            out,
            r#"<action event="postinstall" ChromeOSVersion="1122.2.0" sha256="abc=" needsadmin="true" IsDelta="true" IsDeltaPayload="true" MetadataSignatureRsa="sig" MetadataSize="1234" deadline="now"/>"#
        );
    }

    #[test]
    fn serialize_ok_without_action_and_poll_interval() {
        let resp = Response {
            apps: vec![
                AppResponse {
                    ping: true,
                    update_check: Some(UpdateCheck {
                        manifests: Vec::new(),
                        status: "ok",
                        poll_interval: Some(3600),
                        manifest: Some(Manifest {
                            action: None,
                            codebase: "https://dl.example/app/".into(),
                            version: "2.0.0".into(),
                            package_name: "app-2.0.0.tar".into(),
                            package_hash: "h".into(),
                            package_size: "10".into(),
                        }),
                    }),
                    ..resp_app("{11111111-2222-4333-8444-555555555555}", "ok")
                },
                AppResponse {
                    update_check: Some(UpdateCheck {
                        manifests: Vec::new(),
                        status: "noupdate",
                        poll_interval: Some(300),
                        manifest: None,
                    }),
                    ..resp_app("b", "ok")
                },
            ],
        };
        let xml = resp.to_xml();
        assert!(xml.contains(r#"<app appid="{11111111-2222-4333-8444-555555555555}" status="ok"><ping status="ok"/><updatecheck status="ok" PollInterval="3600"><urls><url codebase="https://dl.example/app/"/></urls><manifest version="2.0.0"><packages><package name="app-2.0.0.tar" hash="h" size="10" required="true"/></packages></manifest></updatecheck></app>"#), "{xml}");
        assert!(xml.contains(r#"<app appid="b" status="ok"><updatecheck status="noupdate" PollInterval="300"/></app>"#), "{xml}");
        assert!(!xml.contains("<actions>"));
    }

    #[test]
    fn serialize_escapes_attribute_values() {
        let resp = Response {
            apps: vec![resp_app("{\"&<x>'}\tz\u{1}", "ok")],
        };
        let xml = resp.to_xml();
        assert!(
            xml.contains(r#"<app appid="{&quot;&amp;&lt;x&gt;&apos;}&#9;z�" status="ok"></app>"#),
            "{xml}"
        );
        // And it parses back to the same value (minus the unrepresentable control char).
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(parsed.apps[0].appid, "{\"&<x>'}\tz\u{fffd}");
    }

    #[test]
    fn response_round_trip() {
        let mut delta = coreos_manifest();
        if let Some(action) = delta.action.as_mut() {
            action.is_delta = true;
            action.chromeos_version = "1122.2.0".into();
            action.metadata_size = "42".into();
            action.deadline = "2016-06-01".into();
        }
        let resp = Response {
            apps: vec![
                AppResponse {
                    ping: true,
                    events: 3,
                    update_check: Some(UpdateCheck {
                        manifests: Vec::new(),
                        status: "ok",
                        poll_interval: Some(60),
                        manifest: Some(delta.clone()),
                    }),
                    ..resp_app(COREOS_APPID, "ok")
                },
                resp_app("{x}", "error-unknownApplication"),
            ],
        };
        let parsed = parse_response(resp.to_xml().as_bytes()).unwrap();
        assert_eq!(parsed.apps.len(), 2);
        let a = &parsed.apps[0];
        assert_eq!(a.appid, COREOS_APPID);
        assert_eq!(a.status, "ok");
        assert_eq!(a.ping_status.as_deref(), Some("ok"));
        assert_eq!(a.event_statuses, ["ok", "ok", "ok"]);
        let check = a.update_check.as_ref().unwrap();
        assert_eq!(check.status, "ok");
        assert_eq!(check.poll_interval, Some(60));
        assert_eq!(check.codebases, [delta.codebase.clone()]);
        assert_eq!(
            check.manifests,
            vec![ParsedManifest {
                codebases: Vec::new(),
                version: delta.version.clone(),
                is_floor: false,
                is_target: false,
                floor_reason: String::new(),
                packages: vec![ParsedPackage {
                    name: delta.package_name.clone(),
                    hash: delta.package_hash.clone(),
                    hash_sha256: String::new(),
                    size: delta.package_size.clone(),
                    required: true,
                }],
                postinstall: delta.action.clone(),
            }]
        );
        let b = &parsed.apps[1];
        assert_eq!(
            (b.appid.as_str(), b.status.as_str()),
            ("{x}", "error-unknownApplication")
        );
        assert_eq!(b.ping_status, None);
        assert_eq!(b.update_check, None);
        assert!(b.event_statuses.is_empty());
    }

    #[test]
    fn parse_nebraska_multi_manifest_response() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="nebraska">
  <daystart elapsed_seconds="0"></daystart>
  <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok">
    <updatecheck status="ok">
      <urls>
        <url codebase="https://update.release.flatcar-linux.net/amd64-usr/"></url>
      </urls>
      <manifest version="3033.2.4" is_floor="true" floor_reason="cgroups v2 migration">
        <packages>
          <package name="flatcar_production_update.gz" hash="q3k1YpZr0aG7o1V2m0S6v7tN0hE=" hash_sha256="" size="457366133" required="true"></package>
          <package name="oem-azure.gz" hash="c2hhMQ==" hash_sha256="c2hhMjU2" size="1024" required="false"></package>
        </packages>
        <actions>
          <action event="postinstall" DisplayVersion="3033.2.4" sha256="ZmxvYXIx" needsadmin="false" IsDeltaPayload="false" DisablePayloadBackoff="true"></action>
        </actions>
      </manifest>
      <manifest version="3510.2.8" is_floor="true" floor_reason="systemd upgrade">
        <packages>
          <package name="flatcar_production_update.gz" hash="aGFzaDI=" size="470000000" required="true"/>
        </packages>
        <actions><action event="install" run="x"/><action event="postinstall" sha256="ZmxvYXIy" needsadmin="false" IsDeltaPayload="false"/></actions>
      </manifest>
      <manifest version="4081.2.0" is_target="true">
        <packages>
          <package name="flatcar_production_update.gz" hash="aGFzaDM=" size="480000000" required="true"/>
        </packages>
      </manifest>
    </updatecheck>
  </app>
</response>
"#;
        let parsed = parse_response(body).unwrap();
        let check = parsed.apps[0].update_check.as_ref().unwrap();
        assert_eq!(
            check.codebases,
            ["https://update.release.flatcar-linux.net/amd64-usr/"]
        );
        let m = &check.manifests;
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].version.as_str(), m[0].is_floor, m[0].is_target),
            ("3033.2.4", true, false)
        );
        assert_eq!(m[0].floor_reason, "cgroups v2 migration");
        assert_eq!(m[0].packages.len(), 2);
        assert_eq!(
            m[0].packages[1],
            ParsedPackage {
                name: "oem-azure.gz".into(),
                hash: "c2hhMQ==".into(),
                hash_sha256: "c2hhMjU2".into(),
                size: "1024".into(),
                required: false,
            }
        );
        assert_eq!(
            m[0].postinstall,
            Some(PostinstallAction {
                sha256: "ZmxvYXIx".into(),
                disable_payload_backoff: true,
                chromeos_version: "3033.2.4".into(),
                ..PostinstallAction::default()
            })
        );
        assert_eq!(m[1].floor_reason, "systemd upgrade");
        assert_eq!(
            m[1].postinstall.as_ref().map(|a| a.sha256.as_str()),
            Some("ZmxvYXIy"),
            "non-postinstall actions are skipped"
        );
        assert_eq!(
            (m[2].version.as_str(), m[2].is_floor, m[2].is_target),
            ("4081.2.0", false, true)
        );
        assert_eq!(m[2].postinstall, None);
        assert_eq!(m[2].packages[0].size, "480000000");
    }

    #[test]
    fn parse_response_with_close_tags_and_whitespace() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<response protocol=\"3.0\" server=\"coreroller\">\n\t<daystart elapsed_seconds=\"0\"></daystart>\n\t<app appid=\"{e96281a6-d1af-4bde-9a0a-97b76e56dc57}\" status=\"ok\">\n\t\t<ping status=\"ok\"></ping>\n\t\t<updatecheck status=\"noupdate\">\n\t\t</updatecheck>\n\t\t<event status=\"ok\"></event>\n\t</app>\n</response>\n";
        let parsed = parse_response(body).unwrap();
        assert_eq!(
            parsed,
            ParsedResponse {
                apps: vec![ParsedApp {
                    appid: COREOS_APPID.into(),
                    status: "ok".into(),
                    ping_status: Some("ok".into()),
                    update_check: Some(ParsedUpdateCheck {
                        status: "noupdate".into(),
                        ..ParsedUpdateCheck::default()
                    }),
                    event_statuses: vec!["ok".into()],
                }]
            }
        );
    }

    #[test]
    fn parse_response_rejects_hostile_input() {
        let lol = br#"<!DOCTYPE r [<!ENTITY a "aaaa">]><response protocol="3.0"/>"#;
        assert_eq!(parse_response(lol), Err(ProtocolError::DoctypeNotAllowed));
        assert!(matches!(
            parse_response(b"<request protocol=\"3.0\"/>"),
            Err(ProtocolError::Malformed(msg)) if msg.contains("expected <response>")
        ));
        assert_eq!(
            parse_response(b"<response/>"),
            Err(ProtocolError::MissingProtocol)
        );
        assert_eq!(
            parse_response(b"<response protocol=\"3.0\">\xfe</response>"),
            Err(ProtocolError::NotUtf8)
        );
        let apps = "<app appid=\"x\" status=\"ok\"/>".repeat(MAX_APPS + 1);
        let body = format!("<response protocol=\"3.0\">{apps}</response>");
        assert_eq!(
            parse_response(body.as_bytes()),
            Err(ProtocolError::TooManyApps)
        );
        let events = "<event status=\"ok\"/>".repeat(MAX_EVENTS_PER_APP + 1);
        let body = format!("<response protocol=\"3.0\"><app>{events}</app></response>");
        assert_eq!(
            parse_response(body.as_bytes()),
            Err(ProtocolError::TooManyEvents)
        );
        let body = format!("<response protocol=\"3.0\">{}", "<a>".repeat(40));
        assert_eq!(parse_response(body.as_bytes()), Err(ProtocolError::TooDeep));
        assert!(matches!(
            parse_response(b"<response protocol=\"3.0\"><app appid=\"&xxe;\"/></response>"),
            Err(ProtocolError::Malformed(_))
        ));
    }

    // ----- fixtures -----

    #[test]
    fn every_request_fixture_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/omaha");
        let mut parsed = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".request.xml") {
                continue;
            }
            // Leaked: the parsed requests borrow their bodies for the rest of the test.
            let body: &'static [u8] = Vec::leak(std::fs::read(&path).unwrap());
            let req = parse_request(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(req.protocol, "3.0", "{name}");
            assert!(!req.apps.is_empty(), "{name}");
            for app in &req.apps {
                assert!(!app.appid.is_empty() && !app.version.is_empty(), "{name}");
                for ev in &app.events {
                    assert!(
                        ev.event_type.is_some() && ev.event_result.is_some(),
                        "{name}"
                    );
                }
            }
            parsed.push((name, req));
        }
        assert!(
            parsed.len() >= 8,
            "only {} fixtures in {}",
            parsed.len(),
            dir.display()
        );

        let get = |name: &str| {
            parsed
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.apps[0].clone())
                .unwrap_or_else(|| panic!("missing fixture {name}"))
        };
        let kinds = |a: &AppRequest<'_>| {
            a.events
                .iter()
                .map(|e| (e.event_type.unwrap(), e.event_result.unwrap()))
                .collect::<Vec<_>>()
        };

        let a = get("update-check.request.xml");
        assert_eq!(a.appid, COREOS_APPID);
        assert_eq!(
            (&*a.version, &*a.track, &*a.machine_id),
            ("2191.0.0", "stable", "0123456789abcdef0123456789abcdef")
        );
        assert!(a.ping && a.update_check);
        assert_eq!(a.events, vec![event(3, 2, "")]);

        let a = get("boot-event.request.xml");
        assert_eq!(a.events, vec![event(3, 2, "0.0.0.0")]);

        for (name, kind) in [
            ("event-download-started.request.xml", (13, 1)),
            ("event-download-finished.request.xml", (14, 1)),
            ("event-installed.request.xml", (3, 1)),
        ] {
            let a = get(name);
            assert!(!a.ping && !a.update_check, "{name}");
            assert_eq!(kinds(&a), [kind], "{name}");
        }

        let a = get("event-complete.request.xml");
        assert_eq!(a.version, "2191.5.0");
        assert!(a.ping && a.update_check);
        assert_eq!(a.events, vec![event(3, 2, "2191.0.0")]);

        let a = get("event-error.request.xml");
        assert_eq!(kinds(&a), [(3, 0)]);
        assert_eq!(a.events[0].error_code, "268437959");

        let multi = &parsed
            .iter()
            .find(|(n, _)| n == "multi-app.request.xml")
            .unwrap()
            .1;
        let ids: Vec<_> = multi.apps.iter().map(|a| &*a.appid).collect();
        assert_eq!(
            ids,
            [COREOS_APPID, "{11111111-2222-4333-8444-555555555555}"]
        );
        assert_eq!(multi.apps[1].track, "default");

        let a = get("fake-client.request.xml");
        assert_eq!(a.oem, "fakeclient");
        assert!(a.update_check && !a.ping);
        assert_eq!(a.events, vec![event(3, 2, "")]);
    }

    #[test]
    fn request_to_xml_round_trips_through_the_parser() {
        let request = Request {
            protocol: "3.0".into(),
            version: "rollbridge-agent-0.1.0".into(),
            updater_version: "rollbridge-agent-0.1.0".into(),
            install_source: "scheduler".into(),
            is_machine: "1".into(),
            os: Some(Os {
                platform: "Docker".into(),
                version: "28.2".into(),
                sp: "".into(),
                arch: "x86_64".into(),
            }),
            apps: vec![AppRequest {
                appid: "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}".into(),
                version: "1.0.0".into(),
                track: "stable & <beta>".into(),
                machine_id: "m-1".into(),
                boot_id: "b-1".into(),
                machine_alias: "host \"one\"".into(),
                multi_manifest_ok: true,
                ping: true,
                update_check: true,
                events: vec![EventRequest {
                    event_type: Some(3),
                    event_result: Some(2),
                    previous_version: "0.9.0".into(),
                    error_code: "0".into(),
                }],
                ..AppRequest::default()
            }],
        };
        let xml = request.to_xml();
        let parsed = parse_request(xml.as_bytes()).expect("parses");
        assert_eq!(parsed, request);
    }
}
