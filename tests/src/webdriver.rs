//! A minimal W3C WebDriver client for the black-box browser tests.
//!
//! [`Browser::start`] launches Debian's `chromedriver` as a child process (on a
//! port it picks itself, so parallel tests never race for one) and opens one
//! headless Chromium session with a fresh, throwaway profile. The client speaks
//! the W3C protocol over plain HTTP with `ureq` and offers only what the tests
//! need: navigate, find by CSS selector, click, run a script (sync or async),
//! read the URL and title, take a screenshot, read the browser console; and for
//! the passkey tests, the W3C virtual authenticator (add, credentials, user
//! verification) and chromedriver's CDP passthrough (`WebAuthn.*` overrides).
//!
//! Certificates: with [`Options::trusted_ca`], chromedriver and Chromium run
//! with a throwaway `HOME` whose NSS database (`~/.pki/nssdb`, made with
//! `certutil` from Debian's `libnss3-tools`) trusts that CA for TLS servers,
//! as a person's browser would after installing it. No certificate error is
//! ever bypassed: an untrusted certificate still shows Chromium's "Privacy
//! error" page (and WebDriver reports the navigation as a success, so tests
//! assert on a marker of the page they expect).
//!
//! Dropping the [`Browser`] ends the session, kills chromedriver (and, if the
//! session could not be ended, whatever is left in its process group) and
//! removes the profile. It never touches a process it did not start.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use std::{fmt, fs, thread};

/// Debian's `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium` package.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `libnss3-tools` package.
pub const CERTUTIL: &str = "/usr/bin/certutil";

/// The key under which W3C WebDriver wraps an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to say which port it listens on.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the browser is launched.
#[derive(Clone, Debug)]
pub struct Options {
    /// Overrides the User-Agent (`--user-agent`); `None` keeps Chromium's own,
    /// which says `HeadlessChrome` and is dropped by a bot filter: tests that want
    /// their hits stored pass a desktop one such as [`crate::CHROME_UA`].
    pub user_agent: Option<String>,
    /// Window size in CSS pixels; `window.innerWidth` equals the width.
    pub window_size: (u32, u32),
    /// More command-line switches for Chromium.
    pub extra_args: Vec<String>,
    /// A CA certificate (PEM) the browser trusts for TLS servers, through an
    /// NSS database in a throwaway `HOME` (see the module doc).
    pub trusted_ca: Option<PathBuf>,
    /// Host names Chromium resolves to an address of the test's choosing
    /// (`--host-resolver-rules=MAP name addr`); the port, the TLS server
    /// name and the origin stay the name's.
    pub resolve: Vec<(String, std::net::IpAddr)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user_agent: None,
            window_size: (1280, 800),
            extra_args: Vec::new(),
            trusted_ca: None,
            resolve: Vec::new(),
        }
    }
}

/// A failed WebDriver call.
#[derive(Debug)]
pub enum Error {
    /// chromedriver could not be started or did not report its port.
    Launch(String),
    /// The HTTP exchange with chromedriver failed.
    Http(ureq::Error),
    /// chromedriver answered with a W3C error (`no such element`, `javascript error`, ...).
    WebDriver {
        status: u16,
        error: String,
        message: String,
    },
    /// The answer was not what the protocol promises, or writing a file failed.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Launch(m) => write!(f, "cannot start the browser: {m}"),
            Error::Http(e) => write!(f, "webdriver http: {e}"),
            Error::WebDriver {
                status,
                error,
                message,
            } => {
                // chromedriver's messages carry a long native stack trace; the first line says it.
                let first = message.lines().next().unwrap_or_default();
                write!(f, "webdriver {status} {error}: {first}")
            }
            Error::Other(m) => write!(f, "webdriver: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ureq::Error> for Error {
    fn from(e: ureq::Error) -> Self {
        Error::Http(e)
    }
}

/// A reference to an element of the current page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// The element as a script argument for [`Browser::execute`] (`arguments[i]`).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// One line of the browser console.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    pub message: String,
}

/// One headless Chromium session, driven through its own chromedriver.
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT` of chromedriver.
    base: String,
    /// `None` until the session exists, and again once it has been ended.
    session: Option<String>,
    driver: Child,
    profile: PathBuf,
}

/// Options of a W3C virtual authenticator ([`Browser::add_virtual_authenticator`]).
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// `ctap2` (or `ctap2_1`, `ctap1/u2f`).
    pub protocol: &'static str,
    /// `internal` (a platform authenticator), `usb`, `nfc`, `ble`.
    pub transport: &'static str,
    /// Keeps discoverable (resident) credentials. Chromium's holds three at most.
    pub has_resident_key: bool,
    /// Can verify its user (a PIN or a fingerprint).
    pub has_user_verification: bool,
    /// Verification succeeds (see [`Browser::set_user_verified`]).
    pub is_user_verified: bool,
    /// The user consents (`false` simulates a cancel, seen at the request's timeout).
    pub is_user_consenting: bool,
}

impl Default for Authenticator {
    /// A platform authenticator that keeps passkeys and verifies its user.
    fn default() -> Self {
        Authenticator {
            protocol: "ctap2",
            transport: "internal",
            has_resident_key: true,
            has_user_verification: true,
            is_user_verified: true,
            is_user_consenting: true,
        }
    }
}

/// A credential a virtual authenticator holds.
#[derive(Clone, Debug)]
pub struct Credential {
    /// Its id, base64url.
    pub id: String,
    pub is_resident: bool,
    pub rp_id: String,
    /// The private key, base64url PKCS#8.
    pub private_key: String,
    pub sign_count: u64,
    /// base64url; `None` for a non-resident credential.
    pub user_handle: Option<String>,
}

impl Credential {
    fn from_json(v: &Value) -> Credential {
        Credential {
            id: v["credentialId"].as_str().unwrap_or_default().to_string(),
            is_resident: v["isResidentCredential"].as_bool().unwrap_or(false),
            rp_id: v["rpId"].as_str().unwrap_or_default().to_string(),
            private_key: v["privateKey"].as_str().unwrap_or_default().to_string(),
            sign_count: v["signCount"].as_u64().unwrap_or(0),
            user_handle: v["userHandle"].as_str().map(str::to_string),
        }
    }

    /// The WebDriver "add credential" parameters that put this credential
    /// (say, taken from another authenticator) into an authenticator.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "credentialId": self.id,
            "isResidentCredential": self.is_resident,
            "rpId": self.rp_id,
            "privateKey": self.private_key,
            "signCount": self.sign_count,
        });
        if let Some(h) = &self.user_handle {
            v["userHandle"] = json!(h);
        }
        v
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start(options: Options) -> Result<Browser, Error> {
        let profile = fresh_profile_dir()?;
        let mut command = Command::new(CHROMEDRIVER);
        if let Some(ca) = &options.trusted_ca {
            // The profile dir doubles as HOME (its NSS db) and TMPDIR (where
            // chromedriver puts its own scratch): all goes at teardown.
            if let Err(e) = trust_ca(&profile, ca) {
                let _ = fs::remove_dir_all(&profile);
                return Err(e);
            }
            let tmp = profile.join("tmp");
            fs::create_dir_all(&tmp)
                .map_err(|e| Error::Launch(format!("{}: {e}", tmp.display())))?;
            command.env("HOME", &profile).env("TMPDIR", tmp);
        }
        command
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own process group, so that Chromium (its child) can be found on teardown.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = command.spawn().map_err(|e| {
            Error::Launch(format!(
                "{CHROMEDRIVER}: {e} (apt-get install chromium chromium-driver)"
            ))
        })?;
        let port = match read_driver_port(&mut driver) {
            Ok(port) => port,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                let _ = fs::remove_dir_all(&profile);
                return Err(e);
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(COMMAND_TIMEOUT))
            .build();
        let mut browser = Browser {
            agent: ureq::Agent::new_with_config(config),
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            driver,
            profile,
        };

        let (width, height) = options.window_size;
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={width},{height}"),
            format!(
                "--user-data-dir={}",
                browser.profile.join("chromium").display()
            ),
        ];
        if !options.resolve.is_empty() {
            let rules: Vec<String> = options
                .resolve
                .iter()
                .map(|(name, ip)| format!("MAP {name} {ip}"))
                .collect();
            args.push(format!("--host-resolver-rules={}", rules.join(",")));
        }
        if let Some(ua) = &options.user_agent {
            args.push(format!("--user-agent={ua}"));
        }
        args.extend(options.extra_args);
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": false,
                "pageLoadStrategy": "normal",
                "timeouts": { "pageLoad": 30_000, "script": 30_000, "implicit": 0 },
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            }}
        });
        let url = format!("{}/session", browser.base);
        let created = browser.request("POST", &url, Some(capabilities))?;
        let id = created["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Other(format!("new session without an id: {created}")))?;
        browser.session = Some(id.to_string());
        Ok(browser)
    }

    /// Opens `url` and waits for the page to load.
    pub fn navigate(&self, url: &str) -> Result<(), Error> {
        self.command("POST", "/url", json!({ "url": url }))
            .map(drop)
    }

    /// The first element matching a CSS selector (`no such element` if there is none).
    pub fn find_css(&self, selector: &str) -> Result<Element, Error> {
        let found = self.command(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": selector }),
        )?;
        found[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_string()))
            .ok_or_else(|| Error::Other(format!("find {selector:?}: unexpected answer {found}")))
    }

    /// Clicks an element the way a user would (scrolls it into view, real mouse events).
    pub fn click(&self, element: &Element) -> Result<(), Error> {
        self.command("POST", &format!("/element/{}/click", element.0), json!({}))
            .map(drop)
    }

    /// Runs `script` as the body of a function in the page (`arguments` are
    /// `args`; pass elements with [`Element::to_json`]) and returns what it returns.
    /// A returned promise is awaited.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, Error> {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Runs `script` as the body of an async function in the page: it ends by
    /// calling `arguments[arguments.length - 1]` (the callback WebDriver adds
    /// after `args`) with its result, which is returned.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value, Error> {
        self.command(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
    }

    /// The title of the current page.
    pub fn title(&self) -> Result<String, Error> {
        let t = self.command("GET", "/title", Value::Null)?;
        t.as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Other(format!("title: {t}")))
    }

    /// Adds a W3C virtual authenticator (WebAuthn Level 2, section 11) and
    /// returns its id. While one is attached, Chromium does not run its own
    /// certificate check for WebAuthn: trust is the page's to prove.
    pub fn add_virtual_authenticator(&self, a: &Authenticator) -> Result<String, Error> {
        let id = self.command(
            "POST",
            "/webauthn/authenticator",
            json!({
                "protocol": a.protocol,
                "transport": a.transport,
                "hasResidentKey": a.has_resident_key,
                "hasUserVerification": a.has_user_verification,
                "isUserVerified": a.is_user_verified,
                "isUserConsenting": a.is_user_consenting,
            }),
        )?;
        id.as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Other(format!("add authenticator: {id}")))
    }

    /// Removes a virtual authenticator and its credentials.
    pub fn remove_virtual_authenticator(&self, authenticator: &str) -> Result<(), Error> {
        self.command(
            "DELETE",
            &format!("/webauthn/authenticator/{authenticator}"),
            Value::Null,
        )
        .map(drop)
    }

    /// The credentials an authenticator holds.
    pub fn credentials(&self, authenticator: &str) -> Result<Vec<Credential>, Error> {
        let list = self.command(
            "GET",
            &format!("/webauthn/authenticator/{authenticator}/credentials"),
            Value::Null,
        )?;
        Ok(list
            .as_array()
            .map(|l| l.iter().map(Credential::from_json).collect())
            .unwrap_or_default())
    }

    /// Puts a credential into an authenticator.
    pub fn add_credential(&self, authenticator: &str, c: &Credential) -> Result<(), Error> {
        self.command(
            "POST",
            &format!("/webauthn/authenticator/{authenticator}/credential"),
            c.to_json(),
        )
        .map(drop)
    }

    /// Removes every credential of an authenticator.
    pub fn remove_all_credentials(&self, authenticator: &str) -> Result<(), Error> {
        self.command(
            "DELETE",
            &format!("/webauthn/authenticator/{authenticator}/credentials"),
            Value::Null,
        )
        .map(drop)
    }

    /// Whether the authenticator's next user verifications succeed.
    pub fn set_user_verified(&self, authenticator: &str, verified: bool) -> Result<(), Error> {
        self.command(
            "POST",
            &format!("/webauthn/authenticator/{authenticator}/uv"),
            json!({ "isUserVerified": verified }),
        )
        .map(drop)
    }

    /// A Chrome DevTools Protocol command, through chromedriver's passthrough.
    pub fn cdp(&self, cmd: &str, params: Value) -> Result<Value, Error> {
        self.command(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": cmd, "params": params }),
        )
    }

    /// Makes the authenticator's next answers wrong on purpose (CDP
    /// `WebAuthn.setResponseOverrideBits`): a bogus signature, the user-verified
    /// flag cleared (`bad_uv`), the user-present flag cleared (`bad_up`).
    /// All `false` puts it right again.
    pub fn override_response_bits(
        &self,
        authenticator: &str,
        bogus_signature: bool,
        bad_uv: bool,
        bad_up: bool,
    ) -> Result<(), Error> {
        self.cdp(
            "WebAuthn.setResponseOverrideBits",
            json!({
                "authenticatorId": authenticator,
                "isBogusSignature": bogus_signature,
                "isBadUV": bad_uv,
                "isBadUP": bad_up,
            }),
        )
        .map(drop)
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> Result<String, Error> {
        let url = self.command("GET", "/url", Value::Null)?;
        url.as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Other(format!("url: {url}")))
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot_png(&self, path: &Path) -> Result<(), Error> {
        let encoded = self.command("GET", "/screenshot", Value::Null)?;
        let encoded = encoded
            .as_str()
            .ok_or_else(|| Error::Other("screenshot: not a string".into()))?;
        let png =
            base64_decode(encoded).ok_or_else(|| Error::Other("screenshot: bad base64".into()))?;
        fs::write(path, png).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// The browser console lines logged since the previous call (chromedriver's
    /// `goog:loggingPrefs` log; each entry is returned once).
    pub fn console_log(&self) -> Result<Vec<LogEntry>, Error> {
        let entries = self.command("POST", "/se/log", json!({ "type": "browser" }))?;
        Ok(entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub fn quit(mut self) -> Result<(), Error> {
        self.end_session()
    }

    fn end_session(&mut self) -> Result<(), Error> {
        match self.session.take() {
            Some(id) => self
                .request("DELETE", &format!("{}/session/{id}", self.base), None)
                .map(drop),
            None => Ok(()),
        }
    }

    /// One command of the current session: `path` is relative to `/session/{id}`.
    fn command(&self, method: &str, path: &str, body: Value) -> Result<Value, Error> {
        let id = self
            .session
            .as_deref()
            .ok_or_else(|| Error::Other("no session".into()))?;
        let url = format!("{}/session/{id}{path}", self.base);
        let body = if method == "POST" { Some(body) } else { None };
        let mut answer = self.request(method, &url, body)?;
        Ok(answer["value"].take())
    }

    /// One HTTP exchange; W3C errors (`{"value": {"error": ...}}`) become [`Error::WebDriver`].
    fn request(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, Error> {
        let mut response = match (method, body) {
            ("POST", Some(Value::Null)) => self.agent.post(url).send_json(json!({}))?,
            ("POST", Some(body)) => self.agent.post(url).send_json(body)?,
            ("DELETE", _) => self.agent.delete(url).call()?,
            _ => self.agent.get(url).call()?,
        };
        let status = response.status().as_u16();
        // Screenshots of a large window are several megabytes of base64.
        let answer: Value = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()?;
        let error = &answer["value"]["error"];
        if status >= 400 || error.is_string() {
            return Err(Error::WebDriver {
                status,
                error: error.as_str().unwrap_or("unknown error").to_string(),
                message: answer["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(answer)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium.
        let _ = self.end_session();
        // Then the process group we created (its id is chromedriver's pid): chromedriver
        // and whatever Chromium left behind, say when the session could not be ended or
        // never fully started. chromedriver is reaped only afterwards, so the group id
        // cannot have been reused by then.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = fs::remove_dir_all(&self.profile);
    }
}

/// Reads chromedriver's "ChromeDriver was started successfully on port N." and
/// keeps draining its output afterwards so that it can never block on a full pipe.
fn read_driver_port(driver: &mut Child) -> Result<u16, Error> {
    let stdout = driver
        .stdout
        .take()
        .ok_or_else(|| Error::Launch("no stdout".into()))?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains("started successfully on port ") {
                let port = line
                    .rsplit(' ')
                    .next()
                    .and_then(|p| p.trim_end_matches('.').parse().ok());
                let _ = tx.send(port);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(DRIVER_START_TIMEOUT) {
        Ok(Some(port)) => Ok(port),
        Ok(None) => Err(Error::Launch(
            "chromedriver printed an unreadable port".into(),
        )),
        Err(_) => Err(Error::Launch(format!(
            "chromedriver did not report its port within {DRIVER_START_TIMEOUT:?}"
        ))),
    }
}

/// Makes `home/.pki/nssdb`, an NSS database that trusts the CA in `ca_pem`
/// to identify TLS servers (trust flags `C,,`), as Chromium on Linux reads it.
fn trust_ca(home: &Path, ca_pem: &Path) -> Result<(), Error> {
    let db = home.join(".pki/nssdb");
    fs::create_dir_all(&db).map_err(|e| Error::Launch(format!("{}: {e}", db.display())))?;
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| -> Result<(), Error> {
        let out = Command::new(CERTUTIL)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                Error::Launch(format!("{CERTUTIL}: {e} (apt-get install libnss3-tools)"))
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Launch(format!(
                "certutil {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    run(&["-N", "--empty-password", "-d", &db])?;
    let ca = ca_pem.to_string_lossy();
    run(&[
        "-A",
        "-d",
        &db,
        "-n",
        "hitvault test CA",
        "-t",
        "C,,",
        "-i",
        &ca,
    ])
}

/// A new, empty directory for the Chromium profile.
fn fresh_profile_dir() -> Result<PathBuf, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hitvault-chromium-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| Error::Launch(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Standard base64 (with padding), as WebDriver returns screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(base64_decode("aGl0dmF1bHQ=").unwrap(), b"hitvault");
        assert_eq!(base64_decode("aGl0dg==").unwrap(), b"hitv");
        assert_eq!(base64_decode("aGl0").unwrap(), b"hit");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("a*b").is_none());
    }
}
