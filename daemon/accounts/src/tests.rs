//! The accounts' rules, end to end through the journal.

use super::*;

const T0: u64 = 1_900_000_000;

fn open(dir: &Path, policy: Policy) -> Accounts {
    Accounts::open(dir, policy, Limits::default(), T0).unwrap()
}

fn addr(s: &str) -> AddressKey {
    s.parse::<std::net::IpAddr>().unwrap().into()
}

/// An admin `alice` with a password, set up through the first-run link.
fn with_admin(dir: &Path, policy: Policy) -> (Accounts, NewSession) {
    let a = open(dir, policy);
    let link = a.setup_link(T0).unwrap().expect("no admin yet");
    let s = a
        .accept_invite(
            &link,
            Some("alice"),
            Some("correct horse battery"),
            "test",
            T0,
        )
        .unwrap();
    (a, s)
}

#[test]
fn the_setup_link_makes_the_first_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), Policy::default());
    assert!(!a.has_admin());
    let link = a.setup_link(T0).unwrap().unwrap();
    assert!(a.invite_of(&link, T0).is_some());
    let s = a
        .accept_invite(
            &link,
            Some("alice"),
            Some("correct horse battery"),
            "test",
            T0 + 5,
        )
        .unwrap();
    assert!(a.has_admin());
    assert!(a.user(s.user).unwrap().admin);
    assert!(
        a.setup_link(T0).unwrap().is_none(),
        "no setup link once an admin exists"
    );
    let again = a.accept_invite(
        &link,
        Some("mallory"),
        Some("correct horse battery"),
        "x",
        T0 + 6,
    );
    assert!(matches!(again, Err(AccountError::NotFound(_))), "{again:?}");
    assert!(a.user_named("mallory").is_none());
}

#[test]
fn a_setup_link_expires_after_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), Policy::default());
    let link = a.setup_link(T0).unwrap().unwrap();
    assert!(a.invite_of(&link, T0 + INVITE_SECS - 1).is_some());
    assert!(a.invite_of(&link, T0 + INVITE_SECS).is_none());
    let late = a.accept_invite(&link, Some("alice"), None, "x", T0 + INVITE_SECS);
    assert!(matches!(late, Err(AccountError::NotFound(_))));
    assert!(!a.has_admin());
}

#[test]
fn bad_names_and_passwords_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), Policy::default());
    let link = a.setup_link(T0).unwrap().unwrap();
    for (name, pw, says) in [
        ("", "correct horse battery", "1 to 64"),
        ("a b", "correct horse battery", "not ' '"),
        ("alice", "short", "10 characters"),
    ] {
        let e = a
            .accept_invite(&link, Some(name), Some(pw), "x", T0)
            .unwrap_err();
        assert!(e.to_string().contains(says), "{name:?}: {e}");
    }
    // The refusals used nothing up.
    assert!(a.invite_of(&link, T0).is_some());
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    let codes = a.new_recovery_codes(s.user, T0).unwrap();
    drop(a);
    let a = open(dir.path(), Policy::default());
    let v = a.session(&s.token, T0 + 10).expect("the session survives");
    assert_eq!(v.user.name, "alice");
    assert_eq!(v.csrf, s.csrf);
    assert_eq!(v.user.recovery.len(), codes.len());
    assert!(matches!(
        a.sign_in_password(
            "alice",
            "correct horse battery",
            addr("192.0.2.1"),
            "t",
            T0 * 1000
        ),
        Ok(SignIn::Done(_))
    ));
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = with_admin(dir.path(), Policy::default());
    let ip = addr("192.0.2.1");
    let wrong = a
        .sign_in_password("alice", "wrong password!", ip, "t", T0 * 1000)
        .unwrap_err();
    let unknown = a
        .sign_in_password("nobody", "wrong password!", ip, "t", T0 * 1000)
        .unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(matches!(wrong, SignInError::Failed));
    // And about the same time (both run argon2): within a factor of 3.
    let time = |name: &str| {
        let t = std::time::Instant::now();
        let _ = a.sign_in_password(name, "wrong password!", addr("192.0.2.50"), "t", T0 * 1000);
        t.elapsed().as_secs_f64()
    };
    let (k, u) = (time("alice"), time("nobody"));
    assert!(u > k / 3.0 && u < k * 3.0, "known {k:.3}s, unknown {u:.3}s");
}

#[test]
fn a_burst_gets_waits_and_the_owner_still_signs_in_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = with_admin(dir.path(), Policy::default());
    let attacker = addr("198.51.100.7");
    let mut too_many = 0;
    for i in 0..12 {
        match a.sign_in_password("alice", "guess guess guess", attacker, "t", T0 * 1000 + i) {
            Err(SignInError::TooMany(secs)) => {
                assert!(secs >= 1);
                too_many += 1
            }
            Err(SignInError::Failed) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(too_many, 7, "5 free failures, then waits");
    // The right password from the attacker's address must wait too.
    assert!(matches!(
        a.sign_in_password(
            "alice",
            "correct horse battery",
            attacker,
            "t",
            T0 * 1000 + 20
        ),
        Err(SignInError::TooMany(_))
    ));
    // From the owner's address it works at once.
    assert!(matches!(
        a.sign_in_password(
            "alice",
            "correct horse battery",
            addr("192.0.2.10"),
            "t",
            T0 * 1000 + 20
        ),
        Ok(SignIn::Done(_))
    ));
}

#[test]
fn totp_is_a_second_step_and_a_code_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    let (secret, uri) = a.begin_totp(s.user, "hitvault", T0).unwrap();
    assert!(uri.contains("alice"));
    assert!(
        a.confirm_totp(s.user, "000000", T0).is_err()
            || totp::code_at(&secret, T0).unwrap() == "000000"
    );
    a.confirm_totp(s.user, &totp::code_at(&secret, T0).unwrap(), T0)
        .unwrap();

    let ip = addr("192.0.2.1");
    let now = T0 + 60;
    let step = match a
        .sign_in_password("alice", "correct horse battery", ip, "t", now * 1000)
        .unwrap()
    {
        SignIn::SecondStep(t) => t,
        SignIn::Done(_) => panic!("TOTP must be asked for"),
    };
    let code = totp::code_at(&secret, now).unwrap();
    a.sign_in_second(&step, &code, ip, "t", now * 1000).unwrap();
    // The same code again, on a new sign-in: a replay.
    let step = match a
        .sign_in_password("alice", "correct horse battery", ip, "t", now * 1000)
        .unwrap()
    {
        SignIn::SecondStep(t) => t,
        SignIn::Done(_) => panic!(),
    };
    assert!(matches!(
        a.sign_in_second(&step, &code, ip, "t", now * 1000),
        Err(SignInError::Failed)
    ));
    // The step token itself is single use once it succeeded.
    let next = totp::code_at(&secret, now + 30).unwrap();
    a.sign_in_second(&step, &next, ip, "t", (now + 30) * 1000)
        .unwrap();
    assert!(matches!(
        a.sign_in_second(&step, &next, ip, "t", (now + 30) * 1000),
        Err(SignInError::Expired)
    ));
}

#[test]
fn a_recovery_code_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    let (secret, _) = a.begin_totp(s.user, "hitvault", T0).unwrap();
    a.confirm_totp(s.user, &totp::code_at(&secret, T0).unwrap(), T0)
        .unwrap();
    let codes = a.new_recovery_codes(s.user, T0).unwrap();
    assert_eq!(codes.len(), RECOVERY_CODES);
    assert!(codes.iter().all(|c| c.len() == 11 && &c[5..6] == "-"));
    let ip = addr("192.0.2.1");
    let second = || match a
        .sign_in_password("alice", "correct horse battery", ip, "t", T0 * 1000)
        .unwrap()
    {
        SignIn::SecondStep(t) => t,
        SignIn::Done(_) => panic!(),
    };
    // Typed in lower case, without the dash: still the code.
    let typed = codes[3].to_lowercase().replace('-', " ");
    a.sign_in_second(&second(), &typed, ip, "t", T0 * 1000)
        .unwrap();
    assert!(matches!(
        a.sign_in_second(&second(), &codes[3], ip, "t", T0 * 1000),
        Err(SignInError::Failed)
    ));
    assert_eq!(a.user(s.user).unwrap().recovery.len(), RECOVERY_CODES - 1);
}

#[test]
fn sessions_end_when_idle_or_old_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = Policy {
        idle_secs: 100,
        absolute_secs: 1000,
        ..Policy::default()
    };
    let (a, s) = with_admin(dir.path(), p);
    // Used every 90 s it stays alive until its absolute end.
    let mut t = T0;
    while t + 90 < T0 + 1000 {
        t += 90;
        assert!(a.session(&s.token, t).is_some(), "at +{}", t - T0);
    }
    assert!(
        a.session(&s.token, T0 + 1000).is_none(),
        "absolute lifetime"
    );
    // Idle.
    let s2 = a.start_session(s.user, "test", "t", T0).unwrap();
    assert!(a.session(&s2.token, T0 + 99).is_some());
    assert!(a.session(&s2.token, T0 + 99 + 100).is_none(), "idle");
    // Signing out everywhere but here.
    let keep = a.start_session(s.user, "test", "t", T0).unwrap();
    let other = a.start_session(s.user, "test", "t", T0).unwrap();
    let keep_digest = a.session(&keep.token, T0).unwrap().digest;
    assert_eq!(a.end_sessions_of(s.user, Some(&keep_digest)).unwrap(), 1);
    assert!(a.session(&other.token, T0 + 1).is_none());
    assert!(a.session(&keep.token, T0 + 1).is_some());
    // An ended session stays ended after a restart.
    drop(a);
    let a = open(dir.path(), p);
    assert!(a.session(&other.token, T0 + 2).is_none());
    assert!(a.session(&keep.token, T0 + 2).is_some());
}

#[test]
fn a_user_holds_a_bounded_number_of_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    for i in 0..MAX_SESSIONS_PER_USER as u64 + 5 {
        a.start_session(s.user, "test", "t", T0 + i).unwrap();
    }
    assert_eq!(a.sessions_of(s.user).len(), MAX_SESSIONS_PER_USER);
    assert!(a.session(&s.token, T0 + 60).is_none(), "the oldest ended");
}

#[test]
fn the_policy_can_require_a_second_factor() {
    let dir = tempfile::tempdir().unwrap();
    let p = Policy {
        require_second_factor: true,
        ..Policy::default()
    };
    let (a, s) = with_admin(dir.path(), p);
    assert!(a.session(&s.token, T0).unwrap().must_enrol);
    let (secret, _) = a.begin_totp(s.user, "hitvault", T0).unwrap();
    a.confirm_totp(s.user, &totp::code_at(&secret, T0).unwrap(), T0)
        .unwrap();
    assert!(!a.session(&s.token, T0).unwrap().must_enrol);
    assert!(matches!(
        a.remove_totp(s.user),
        Err(AccountError::Conflict(_))
    ));
}

#[test]
fn factors_cannot_all_be_removed_by_their_owner_but_an_admin_resets_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    assert!(matches!(
        a.remove_password(s.user),
        Err(AccountError::Conflict(_))
    ));
    let bob = a.add_user("bob", false, T0).unwrap();
    let enrol = a.invite(Some(bob), false, T0).unwrap();
    let b = a
        .accept_invite(&enrol, None, Some("bobs long password"), "t", T0)
        .unwrap();
    assert_eq!(b.user, bob);
    let link = a.reset_factors(bob, T0 + 1).unwrap();
    assert!(
        a.session(&b.token, T0 + 2).is_none(),
        "sessions end with a reset"
    );
    assert!(a.user(bob).unwrap().password.is_none());
    assert_eq!(a.invite_of(&link, T0 + 2).unwrap().user, Some(bob));
    assert!(matches!(
        a.sign_in_password(
            "bob",
            "bobs long password",
            addr("192.0.2.3"),
            "t",
            T0 * 1000
        ),
        Err(SignInError::Failed)
    ));
}

#[test]
fn the_last_admin_stays_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    assert!(matches!(
        a.remove_user(s.user),
        Err(AccountError::Conflict(_))
    ));
    let bob = a.add_user("bob", false, T0).unwrap();
    assert!(matches!(
        a.add_user("BOB", false, T0),
        Err(AccountError::Conflict(_))
    ));
    a.remove_user(bob).unwrap();
    let carol = a.add_user("carol", false, T0).unwrap();
    assert!(carol > bob);
}

#[test]
fn passkeys_are_kept_with_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = with_admin(dir.path(), Policy::default());
    let data = serde_json::json!({"cred": {"counter": 1}});
    a.add_passkey(s.user, "cred-1", "laptop", data.clone(), T0)
        .unwrap();
    assert!(
        a.add_passkey(s.user, "cred-1", "again", data.clone(), T0)
            .is_err()
    );
    assert!(
        a.add_passkey(s.user, "cred-2", "", data.clone(), T0)
            .is_err()
    );
    let (owner, pk) = a.passkey_owner("cred-1").unwrap();
    assert_eq!((owner.id, pk.name.as_str()), (s.user, "laptop"));
    a.passkey_used(
        s.user,
        "cred-1",
        serde_json::json!({"cred": {"counter": 2}}),
        T0 + 1,
    )
    .unwrap();
    a.rename_passkey(s.user, "cred-1", "work laptop").unwrap();
    a.remove_password(s.user).unwrap();
    assert!(matches!(
        a.remove_passkey(s.user, "cred-1"),
        Err(AccountError::Conflict(_))
    ));
    drop(a);
    let a = open(dir.path(), Policy::default());
    let (_, pk) = a.passkey_owner("cred-1").unwrap();
    assert_eq!(pk.name, "work laptop");
    assert_eq!(pk.last_used, Some(T0 + 1));
    assert_eq!(pk.passkey["cred"]["counter"], 2);
}

/// A cluster's log in one process: a proposal gets the next index and is
/// applied on every node in the log's order (the proposer's included,
/// while its own call waits, as a cluster node's does). `before` holds
/// records another node got in first: they take the indexes ahead of the
/// next proposal.
#[derive(Default)]
struct Log {
    nodes: Mutex<Vec<std::sync::Weak<Accounts>>>,
    entries: Mutex<Vec<Vec<u8>>>,
    before: Mutex<Vec<Vec<u8>>>,
}

impl Log {
    fn append(&self, body: Vec<u8>) -> Option<String> {
        let index = {
            let mut e = self.entries.lock().unwrap();
            e.push(body.clone());
            e.len() as u64
        };
        let mut outcomes = Vec::new();
        for n in self.nodes.lock().unwrap().iter() {
            let n = n.upgrade().unwrap();
            outcomes.push(n.apply_logged(index, &body).unwrap());
        }
        // Every node decides alike.
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
        outcomes.pop().flatten()
    }
}

impl Replicator for Log {
    fn propose(&self, record: &[u8]) -> Result<Option<String>, String> {
        let first: Vec<Vec<u8>> = std::mem::take(&mut *self.before.lock().unwrap());
        for b in first {
            self.append(b);
        }
        Ok(self.append(record.to_vec()))
    }
}

fn cluster_of(dirs: &[&Path]) -> (Arc<Log>, Vec<Arc<Accounts>>) {
    let log = Arc::new(Log::default());
    let nodes: Vec<Arc<Accounts>> = dirs
        .iter()
        .map(|d| {
            Arc::new(Accounts::open_replicated(d, Policy::default(), Limits::default()).unwrap())
        })
        .collect();
    for n in &nodes {
        log.nodes.lock().unwrap().push(Arc::downgrade(n));
        n.replicate_through(log.clone());
    }
    (log, nodes)
}

use std::sync::Arc;

#[test]
fn on_a_cluster_a_change_made_on_one_node_is_applied_on_every_node_and_survives_a_restart() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log, nodes) = cluster_of(&[d1.path(), d2.path()]);
    assert!(nodes[0].replicated() && !nodes[0].made_alone());
    // The first admin through node 1's set-up link; she signs in on node 2.
    let link = nodes[0].setup_link(T0).unwrap().unwrap();
    nodes[0]
        .accept_invite(
            &link,
            Some("alice"),
            Some("correct horse battery"),
            "test",
            T0,
        )
        .unwrap();
    let on2 = nodes[1]
        .sign_in_password(
            "alice",
            "correct horse battery",
            addr("192.0.2.1"),
            "test",
            T0 * 1000,
        )
        .unwrap();
    let SignIn::Done(s) = on2 else {
        panic!("no second factor was set up")
    };
    // Node 2's session is known on node 1 too: it went through the log.
    assert!(nodes[0].session(&s.token, T0 + 1).is_some());
    let bob = nodes[1].add_user("bob", false, T0).unwrap();
    assert_eq!(nodes[0].user(bob).unwrap().name, "bob");
    let entries = log.entries.lock().unwrap().len() as u64;
    assert_eq!(nodes[0].log_index(), entries);
    assert_eq!(nodes[1].log_index(), entries);
    assert_eq!(nodes[0].lock().state, nodes[1].lock().state);

    // A restart reads the same state back, log index included; the log's
    // records applied again (a replay) change nothing.
    let state = nodes[0].lock().state.clone();
    drop(nodes);
    let again = Accounts::open_replicated(d1.path(), Policy::default(), Limits::default()).unwrap();
    assert_eq!(again.lock().state, state);
    for (i, body) in log.entries.lock().unwrap().iter().enumerate() {
        assert_eq!(again.apply_logged(i as u64 + 1, body).unwrap(), None);
    }
    assert_eq!(again.lock().state, state);
    // The compacted form keeps the log index.
    let mut rebuilt = State::default();
    for r in state.to_records() {
        rebuilt.apply(&r).unwrap();
    }
    assert_eq!(rebuilt.log_index, entries);
}

#[test]
fn on_a_cluster_two_nodes_taking_one_name_at_once_get_one_user_and_a_conflict() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log, nodes) = cluster_of(&[d1.path(), d2.path()]);
    // Node 1 adds "carol" while node 2, not knowing it yet, adds "carol"
    // too: node 1's record is ordered first.
    let first = Record::UserAdded {
        id: 0,
        name: "carol".into(),
        admin: false,
        at: T0,
    };
    log.before
        .lock()
        .unwrap()
        .push(serde_json::to_vec(&first).unwrap());
    match nodes[1].add_user("carol", true, T0) {
        Err(AccountError::Conflict(m)) => assert!(m.contains("came first"), "{m}"),
        other => panic!("{other:?}"),
    }
    for n in &nodes {
        let carol = n.user_named("carol").unwrap();
        assert!(!carol.admin, "the first record won on every node");
        assert_eq!(n.users().len(), 1);
        // The refused record changed nothing, its index included (a
        // replay refuses it again alike).
        assert_eq!(n.log_index(), 1);
    }
    assert_eq!(log.entries.lock().unwrap().len(), 2);
}

#[test]
fn a_cluster_node_refuses_changes_until_it_joined_and_never_changes_alone() {
    let d = tempfile::tempdir().unwrap();
    let a = Accounts::open_replicated(d.path(), Policy::default(), Limits::default()).unwrap();
    match a.add_user("dave", false, T0) {
        Err(AccountError::Unavailable(m)) => assert!(m.contains("not joined"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(a.users().is_empty());
    assert_eq!(std::fs::read(a.journal_path()).unwrap(), b"");
    // Accounts made while a node stood alone are told apart.
    let alone = tempfile::tempdir().unwrap();
    open(alone.path(), Policy::default())
        .add_user("erin", false, T0)
        .unwrap();
    let b = Accounts::open_replicated(alone.path(), Policy::default(), Limits::default()).unwrap();
    assert!(b.made_alone());
}

#[test]
fn a_node_far_behind_takes_the_accounts_from_a_snapshot_and_a_stale_one_changes_nothing() {
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_log, nodes) = cluster_of(&[d1.path(), d2.path()]);
    nodes[0].add_user("alice", true, T0).unwrap();
    let old = nodes[0].snapshot_records();
    let bob = nodes[1].add_user("bob", false, T0).unwrap();
    let copy = nodes[0].snapshot_records();

    // A node that missed both changes installs the copy.
    let behind =
        Accounts::open_replicated(d3.path(), Policy::default(), Limits::default()).unwrap();
    assert!(behind.install_records(&copy).unwrap());
    assert_eq!(behind.lock().state, nodes[0].lock().state);
    assert_eq!(behind.user(bob).unwrap().name, "bob");
    // The log's entries the copy covers are skipped when applied again.
    assert_eq!(behind.log_index(), nodes[0].log_index());
    let body = serde_json::to_vec(&Record::UserRemoved { id: bob }).unwrap();
    assert_eq!(
        behind.apply_logged(behind.log_index(), &body).unwrap(),
        None
    );
    assert!(behind.user(bob).is_some());
    // A copy that covers less of the log changes nothing.
    assert!(!behind.install_records(&old).unwrap());
    assert!(behind.user(bob).is_some());
    // Damage is refused, and nothing changes.
    let mut bad = copy.clone();
    bad.extend_from_slice(b"{not a record}\n");
    assert!(behind.install_records(&bad).is_err());
    assert_eq!(behind.lock().state, nodes[0].lock().state);
    // What was installed is what a restart reads.
    let state = behind.lock().state.clone();
    drop(behind);
    let again = Accounts::open_replicated(d3.path(), Policy::default(), Limits::default()).unwrap();
    assert_eq!(again.lock().state, state);
}
