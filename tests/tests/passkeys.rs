//! Passkeys in a real browser, over the daemon's own TLS.
//!
//! The daemon runs with `hostnames = ["hitvault.test"]` and `tls.mode =
//! "local-ca"` (confined, seccomp enforcing, as every test daemon). Debian's
//! headless Chromium, driven over WebDriver, resolves `hitvault.test` to
//! 127.0.0.1 and trusts the CA the daemon generated through an NSS database
//! in a throwaway HOME: no certificate error is bypassed, and the test
//! proves it (a name the certificate does not cover gets Chromium's
//! "Privacy error" page; the daemon's pages load). That matters because
//! while a virtual authenticator is attached Chromium skips its own
//! certificate check for WebAuthn.
//!
//! The flow a person follows: the first-run set-up link from the daemon's
//! log, the admin account, "Add a passkey" with a W3C virtual authenticator,
//! sign out, "Sign in with a passkey", the dashboard. Then the refusals,
//! each with a fresh authenticator holding the same credential (taken from
//! the first, as a copy of the key): a bogus signature and an answer without
//! user verification (CDP `WebAuthn.setResponseOverrideBits`), the same
//! answer sent twice or to another ceremony, and a cloned authenticator
//! whose counter went back. After all of them the real passkey still signs
//! in. Prints the passkey sign-in round trip (start, `get()`, finish).
//!
//! One browser for the whole binary (about a second to start); a ceremony
//! costs tens of milliseconds. Needs `chromium`, `chromium-driver` and
//! `libnss3-tools` (tests/run installs them); without them it fails.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hitvault_tests::Daemon;
use hitvault_tests::webdriver::{Authenticator, Browser, Credential, Options};
use serde_json::{Value, json};

const HOST: &str = "hitvault.test";
/// Mapped to loopback too, but not in the daemon's certificate.
const OTHER_HOST: &str = "not-in-the-certificate.test";
const ADMIN: &str = "admin";
const PASSWORD: &str = "a long enough test password";
/// Sign-ins timed for the round-trip figure.
const ROUNDS: usize = 10;
const WAIT: Duration = Duration::from_secs(20);

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn origin(d: &Daemon) -> String {
    format!("https://{HOST}:{}", d.addr.port())
}

/// The token of the set-up link the daemon logged at its first start.
fn setup_token(d: &Daemon) -> String {
    let log = d.log_text();
    let at = log
        .find("/setup/")
        .unwrap_or_else(|| panic!("no set-up link in the daemon's log:\n{log}"));
    log[at + "/setup/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Polls the current URL until `want` holds.
fn wait_for_url(b: &Browser, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = b.current_url().unwrap_or_default();
        if want(&url) {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still at {url} after {WAIT:?}; page text: {}",
            page_text(b)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn page_text(b: &Browser) -> String {
    b.execute("return document.body ? document.body.innerText : ''", &[])
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn type_into(b: &Browser, selector: &str, text: &str) -> TestResult {
    let el = b.find_css(selector)?;
    b.execute(
        "arguments[0].value = arguments[1]; return true",
        &[el.to_json(), json!(text)],
    )?;
    Ok(())
}

/// Runs the page's own passkey sign-in (`hitvaultPasskey.signIn()`):
/// `Ok(milliseconds)` or `Err((error code, message))`. (The script's answer
/// avoids the key `error`, which WebDriver reserves for its own errors.)
fn sign_in(b: &Browser) -> Result<f64, (String, String)> {
    let r = b
        .execute_async(
            "var done = arguments[arguments.length - 1];
             var t0 = performance.now();
             window.hitvaultPasskey.signIn().then(
               function () { done({ ms: performance.now() - t0 }); },
               function (e) { done({ refused: e.name, why: e.message }); });",
            &[],
        )
        .expect("the script runs");
    match r["ms"].as_f64() {
        Some(ms) => Ok(ms),
        None => Err((
            r["refused"].as_str().unwrap_or_default().to_string(),
            r["why"].as_str().unwrap_or_default().to_string(),
        )),
    }
}

fn refused(case: &str, r: Result<f64, (String, String)>, want: &str) {
    match r {
        Ok(_) => panic!("{case}: the sign-in was accepted"),
        Err((code, message)) => assert!(
            code == "invalid" && message.contains(want),
            "{case}: refused with {code}: {message:?}, wanted invalid saying {want:?}"
        ),
    }
}

/// A fresh authenticator holding `cred` (a copy of its key), with its
/// counter set to `sign_count`.
fn fresh_authenticator(b: &Browser, cred: &Credential, sign_count: u64) -> String {
    let a = b
        .add_virtual_authenticator(&Authenticator::default())
        .unwrap();
    let copy = Credential {
        sign_count,
        ..cred.clone()
    };
    b.add_credential(&a, &copy).unwrap();
    a
}

#[test]
fn passkeys_in_headless_chromium_over_the_daemons_own_tls() -> TestResult {
    let d = Daemon::start(&[
        ("HITVAULT_TLS_MODE", "local-ca"),
        ("HITVAULT_HOSTNAMES", HOST),
    ]);
    let ca = d.data_dir.join("tls/ca.crt");
    assert!(ca.exists(), "the daemon made no CA at {}", ca.display());
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let b = Browser::start(Options {
        trusted_ca: Some(ca),
        resolve: vec![(HOST.into(), loopback), (OTHER_HOST.into(), loopback)],
        ..Options::default()
    })?;

    // The browser checks certificates: a name the certificate does not
    // cover gets the interstitial (WebDriver calls that navigation a success).
    b.navigate(&format!("https://{OTHER_HOST}:{}/login", d.addr.port()))?;
    assert_eq!(
        b.title()?,
        "Privacy error",
        "a certificate error is not shown"
    );
    assert!(b.find_css("#passkey-signin").is_err());

    // 1. The first-run link, over TLS the browser trusts.
    let started = Instant::now();
    b.navigate(&format!("{}/setup/{}", origin(&d), setup_token(&d)))?;
    let title = b.title()?;
    assert_ne!(
        title, "Privacy error",
        "the daemon's certificate is not trusted"
    );
    assert!(title.contains("Set up"), "set-up page title: {title:?}");
    println!("first TLS page load: {} ms", started.elapsed().as_millis());
    type_into(&b, "#setup-name", ADMIN)?;
    type_into(&b, "#setup-password", PASSWORD)?;
    type_into(&b, "#setup-confirm", PASSWORD)?;
    b.click(&b.find_css("form.auth-form button[type=submit]")?)?;
    wait_for_url(&b, "set-up", |u| u.contains("/account?done=welcome"));

    // 2. Add a passkey with a virtual authenticator.
    let first = b.add_virtual_authenticator(&Authenticator::default())?;
    type_into(&b, "#passkey-name", "test laptop")?;
    b.click(&b.find_css("#passkey-add")?)?;
    wait_for_url(&b, "add a passkey", |u| u.contains("done=passkey"));
    assert!(
        page_text(&b).contains("test laptop"),
        "the account page does not list the new passkey: {}",
        page_text(&b)
    );
    let creds = b.credentials(&first)?;
    assert_eq!(creds.len(), 1, "{creds:?}");
    let cred = creds[0].clone();
    assert!(
        cred.is_resident,
        "the passkey is not discoverable: {cred:?}"
    );
    assert_eq!(cred.rp_id, HOST);
    assert!(cred.user_handle.is_some());

    // 3. Sign out, then in with the passkey: no user name typed.
    b.click(&b.find_css("form[action='/logout'] button")?)?;
    wait_for_url(&b, "sign out", |u| !u.contains("/account"));
    b.navigate(&format!("{}/login", origin(&d)))?;
    let first_button = b.execute(
        "var f = document.querySelector('main button, main [role=button]'); return f && f.id",
        &[],
    )?;
    assert_eq!(
        first_button,
        json!("passkey-signin"),
        "the passkey button comes first"
    );
    b.click(&b.find_css("#passkey-signin")?)?;
    let url = wait_for_url(&b, "passkey sign-in", |u| !u.contains("/login"));
    assert!(url.starts_with(&origin(&d)), "{url}");
    let who = b.execute(
        "var w = document.querySelector('.who a'); return w && w.textContent",
        &[],
    )?;
    assert_eq!(
        who,
        json!(ADMIN),
        "the dashboard does not show the signed-in admin"
    );

    // The figure: the sign-in page's own script, start + get() + finish.
    b.navigate(&format!("{}/login", origin(&d)))?;
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|i| sign_in(&b).unwrap_or_else(|e| panic!("round {i}: {e:?}")))
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "passkey sign-in round trip: median {:.1} ms, max {:.1} ms ({ROUNDS} rounds, \
         headless Chromium over TLS, virtual authenticator)",
        times[ROUNDS / 2],
        times[ROUNDS - 1]
    );
    let count = b.credentials(&first)?[0].sign_count;
    b.remove_virtual_authenticator(&first)?;

    // 4. Refusals, each with a fresh authenticator holding a copy of the key.
    // A bogus signature.
    let a = fresh_authenticator(&b, &cred, count);
    b.override_response_bits(&a, true, false, false)?;
    refused("bogus signature", sign_in(&b), "signature does not verify");
    b.override_response_bits(&a, false, false, false)?;
    sign_in(&b).map_err(|e| format!("the same authenticator, signing right: {e:?}"))?;
    let count = b.credentials(&a)?[0].sign_count;
    b.remove_virtual_authenticator(&a)?;

    // No user verification where it is required: this passkey verified
    // its user at registration, so every sign-in must.
    let a = fresh_authenticator(&b, &cred, count);
    b.override_response_bits(&a, false, true, false)?;
    refused("no user verification", sign_in(&b), "did not verify you");
    b.remove_virtual_authenticator(&a)?;

    // A replayed answer: the same answer twice, then given to a new ceremony.
    let a = fresh_authenticator(&b, &cred, count + 1);
    let replay = b.execute_async(
        "var done = arguments[arguments.length - 1];
         var P = window.hitvaultPasskey, first;
         var said = function (e) { return { refused: e.name, why: e.message }; };
         P.assertion().then(function (a) { first = a; return P.finishSignIn(a); })
          .then(function () { return P.finishSignIn(first).then(function () { return { accepted: true }; }, said); })
          .then(function (twice) {
            return P.assertion().then(function (b) {
              return P.finishSignIn({ ceremony: b.ceremony, credential: first.credential })
                .then(function () { return { accepted: true }; }, said);
            }).then(function (other) { done({ twice: twice, other: other }); });
          })
          .catch(function (e) { done({ failed: said(e) }); });",
        &[],
    )?;
    assert!(replay["failed"].is_null(), "the first use failed: {replay}");
    assert_refusal(&replay["twice"], "already used");
    assert_refusal(&replay["other"], "another sign-in request");
    let count = b.credentials(&a)?[0].sign_count;
    b.remove_virtual_authenticator(&a)?;

    // A cloned authenticator: the key copied when its counter was lower.
    let a = fresh_authenticator(&b, &cred, 1);
    refused(
        "cloned authenticator",
        sign_in(&b),
        "counter did not increase",
    );
    b.remove_virtual_authenticator(&a)?;

    // After all that, the real passkey still signs in.
    let a = fresh_authenticator(&b, &cred, count + 1);
    sign_in(&b).map_err(|e| format!("the real passkey after the refusals: {e:?}"))?;
    b.remove_virtual_authenticator(&a)?;

    // 5. The account page's removals: the password (the passkey signs in),
    // then, with a password set again, the passkey.
    b.navigate(&format!("{}/account", origin(&d)))?;
    b.click(&b.find_css("form[action='/account/password/remove'] button")?)?;
    wait_for_url(&b, "remove the password", |u| {
        u.contains("done=password-removed")
    });
    type_into(&b, "#pw-new", PASSWORD)?;
    type_into(&b, "#pw-confirm", PASSWORD)?;
    b.click(&b.find_css("form[action='/account/password'] button")?)?;
    // Not `contains("done=password")`: the page before it, with
    // `done=password-removed`, would match at once.
    wait_for_url(&b, "set the password", |u| {
        u.contains("done=password") && !u.contains("done=password-removed")
    });
    b.click(&b.find_css("form[action^='/account/passkeys/'][action$='/remove'] button")?)?;
    wait_for_url(&b, "remove the passkey", |u| {
        u.contains("done=passkey-removed")
    });
    audit_says(&d);

    let severe: Vec<_> = b
        .console_log()?
        .into_iter()
        .filter(|e| e.level == "SEVERE" && e.message.contains("Content Security Policy"))
        .collect();
    assert!(severe.is_empty(), "CSP violations: {severe:?}");
    b.quit()?;
    Ok(())
}

/// The audit log holds the passkey path's entries: added and removed,
/// sign-ins good and refused (as the passkey's owner, with the address),
/// and the password removed.
fn audit_says(d: &Daemon) {
    let all: Vec<Value> = std::fs::read_to_string(d.data_dir.join("accounts/audit.jsonl"))
        .expect("the audit log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&Value> { all.iter().filter(|e| e["kind"] == kind).collect() };
    let admin = |e: &Value| e["actor"]["kind"] == "user" && e["actor"]["name"] == ADMIN;
    let added = of("passkey_added");
    assert_eq!(added.len(), 1, "{all:#?}");
    assert!(admin(added[0]), "{}", added[0]);
    assert_eq!(added[0]["detail"]["name"], "test laptop");
    assert_eq!(added[0]["address"], "127.0.0.1");
    let by_passkey: Vec<&Value> = of("sign_in")
        .into_iter()
        .filter(|e| e["detail"]["method"] == "passkey")
        .collect();
    // The first, the timed rounds, two after refusals, the replay's first use.
    assert!(by_passkey.len() >= ROUNDS + 4, "{by_passkey:#?}");
    assert!(
        by_passkey
            .iter()
            .all(|e| admin(e) && e["address"] == "127.0.0.1")
    );
    let failed = of("sign_in_failed");
    assert!(
        failed.len() >= 5,
        "bogus signature, no verification, twice, another ceremony, clone: {failed:#?}"
    );
    for e in &failed {
        assert_eq!(e["detail"]["method"], "passkey", "{e}");
        assert_eq!(e["address"], "127.0.0.1", "{e}");
    }
    assert!(
        failed.iter().all(|e| admin(e)),
        "as the passkey's owner: {failed:#?}"
    );
    for kind in ["password_removed", "passkey_removed"] {
        let e = of(kind);
        assert_eq!(e.len(), 1, "{kind}: {all:#?}");
        assert!(admin(e[0]), "{}", e[0]);
    }
    assert_eq!(of("passkey_removed")[0]["detail"]["name"], "test laptop");
}

fn assert_refusal(v: &Value, want: &str) {
    assert!(
        v["refused"] == "invalid" && v["why"].as_str().is_some_and(|m| m.contains(want)),
        "wanted a refusal saying {want:?}, got {v}"
    );
}
