// hitvault passkeys: the "Sign in with a passkey" button (#passkey-signin) of
// the sign-in page and the "Add a passkey" button (#passkey-add) of the
// account page. Each runs one WebAuthn ceremony with this daemon:
//   POST /login/passkey/start, navigator.credentials.get(),
//   POST /login/passkey/finish, then go to the answer's "redirect";
//   POST /account/passkeys/start, navigator.credentials.create(),
//   POST /account/passkeys/finish (name from #passkey-name), then go to the
//   answer's "redirect" (the account page, saying the passkey is saved).
// The account page's requests carry the session's CSRF token (the data-csrf
// attribute of the nearest element holding one) in X-CSRF-Token. What went
// wrong is written in #passkey-status (made next to the button if the page
// has none; role="status"). It talks to this
// daemon only; window.hitvaultPasskey exposes the ceremonies (and the two
// halves of a sign-in, which the browser tests use to replay an answer).
(function () {
  "use strict";

  function fromB64url(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfOf(el) {
    var holder = (el && el.closest && el.closest("[data-csrf]")) || document.querySelector("[data-csrf]");
    return holder ? holder.getAttribute("data-csrf") : "";
  }

  function post(url, body, csrf) {
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    return fetch(url, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var e = new Error(data.message || ("the server answered " + r.status));
          e.name = data.error || "HttpError";
          throw e;
        }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      var d = { type: c.type, id: fromB64url(c.id) };
      if (c.transports) d.transports = c.transports;
      return d;
    });
  }

  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64url(pk.user.id) });
    pk.excludeCredentials = descriptors(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.allowCredentials = descriptors(pk.allowCredentials);
    return { publicKey: pk };
  }

  function credentialJSON(c) {
    var r = c.response;
    var out = {
      id: c.id,
      rawId: toB64url(c.rawId),
      type: c.type,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) out.response.userHandle = toB64url(r.userHandle);
    }
    return out;
  }

  function supported() {
    return window.isSecureContext && !!window.PublicKeyCredential && !!navigator.credentials;
  }

  var UNSUPPORTED = "Passkeys need a secure page: open this appliance by its hostname " +
    "over HTTPS (or as localhost on the appliance itself).";

  // The first half of a sign-in: a ceremony from the server and the
  // authenticator's answer to it, {ceremony, credential}.
  function assertion() {
    if (!supported()) return Promise.reject(new Error(UNSUPPORTED));
    return post("/login/passkey/start", {}).then(function (start) {
      return navigator.credentials.get(requestOptions(start.options)).then(function (cred) {
        return { ceremony: start.ceremony, credential: credentialJSON(cred) };
      });
    });
  }

  // The second half: the server checks the answer and starts a session.
  function finishSignIn(answer) {
    return post("/login/passkey/finish", answer);
  }

  // Sign in: resolves with the server's answer ({redirect}). `next` is the
  // page to go to after (the sign-in form's hidden "next" field).
  function signIn(next) {
    return assertion().then(function (answer) {
      if (next) answer.next = next;
      return finishSignIn(answer);
    });
  }

  // Add a passkey to the signed-in account: resolves with {credential, name}.
  function add(name, csrf) {
    if (!supported()) return Promise.reject(new Error(UNSUPPORTED));
    csrf = csrf || csrfOf(null);
    return post("/account/passkeys/start", {}, csrf).then(function (start) {
      return navigator.credentials.create(creationOptions(start.options)).then(function (cred) {
        return post("/account/passkeys/finish",
          { ceremony: start.ceremony, credential: credentialJSON(cred), name: name || "" }, csrf);
      });
    });
  }

  // A person's words for what the browser said.
  function explain(e) {
    if (e && e.name === "NotAllowedError") {
      return "The passkey request was cancelled or timed out (or no passkey of this site is on this device).";
    }
    if (e && e.name === "InvalidStateError") return "This device holds one of your passkeys already.";
    if (e && e.name === "SecurityError") return UNSUPPORTED;
    return (e && e.message) || String(e);
  }

  function statusFor(button) {
    var id = button.id + "-status";
    var el = document.getElementById("passkey-status") || document.getElementById(id);
    if (!el) {
      el = document.createElement("p");
      el.id = id;
      el.className = "status";
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      button.insertAdjacentElement("afterend", el);
    }
    return el;
  }

  function wire(button, run, done) {
    var status = statusFor(button);
    if (!supported()) {
      button.disabled = true;
      status.textContent = UNSUPPORTED;
      return;
    }
    button.addEventListener("click", function (ev) {
      ev.preventDefault();
      button.disabled = true;
      status.textContent = "Waiting for your passkey\u2026";
      run().then(function (answer) {
        status.textContent = "Done.";
        done(answer);
      }, function (e) {
        button.disabled = false;
        status.textContent = explain(e);
      });
    });
  }

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  window.hitvaultPasskey = { signIn: signIn, add: add, assertion: assertion, finishSignIn: finishSignIn };

  ready(function () {
    var signInButton = document.getElementById("passkey-signin");
    if (signInButton) {
      wire(signInButton, function () {
        var next = document.querySelector("input[name=next]");
        return signIn(next ? next.value : "");
      }, function (answer) {
        window.location.assign(answer.redirect || "/");
      });
    }
    var addButton = document.getElementById("passkey-add");
    if (addButton) {
      wire(addButton, function () {
        var nameInput = document.getElementById("passkey-name");
        return add(nameInput ? nameInput.value : "", csrfOf(addButton));
      }, function (answer) {
        window.location.assign(answer.redirect || "/account");
      });
    }
  });
})();
