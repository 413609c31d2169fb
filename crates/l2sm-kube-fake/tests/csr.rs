//! CertificateSigningRequests as kube-apiserver treats them: the sender's identity is the
//! server's, the spec is immutable, `/approval` writes only conditions and needs the signer's
//! `approve` verb, `/status` sets a certificate only on approved requests and needs `sign`.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use l2sm_kube_fake::{FakeApi, Identity};
use std::collections::BTreeMap;

const SIGNER: &str = "example.com/switch";
const REQUEST: &str =
    "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAA==\n-----END CERTIFICATE REQUEST-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn csr(name: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(REQUEST.as_bytes().to_vec()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["client auth".into()]),
            // A client cannot choose who it is.
            username: Some("system:admin".into()),
            groups: Some(vec!["system:masters".into()]),
            ..Default::default()
        },
        status: None,
    }
}

fn agent() -> Identity {
    Identity {
        username: "system:serviceaccount:ns:agent".into(),
        uid: "u1".into(),
        groups: vec!["system:serviceaccounts".into()],
        extra: BTreeMap::from([(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec!["p1".to_string()],
        )]),
    }
}

fn with_condition(mut c: CertificateSigningRequest, ty: &str) -> CertificateSigningRequest {
    c.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: ty.into(),
            status: "True".into(),
            reason: Some("Test".into()),
            ..Default::default()
        });
    c
}

#[tokio::test]
async fn the_sender_is_the_servers_and_the_spec_is_immutable() {
    let fake = FakeApi::new();
    let api: Api<CertificateSigningRequest> = Api::all(fake.client_as(agent()));
    let created = api.create(&PostParams::default(), &csr("a")).await.unwrap();
    assert_eq!(
        created.spec.username.as_deref(),
        Some("system:serviceaccount:ns:agent")
    );
    assert_eq!(created.spec.uid.as_deref(), Some("u1"));
    assert_eq!(
        created.spec.groups,
        Some(vec!["system:serviceaccounts".to_string()])
    );
    assert_eq!(created.spec.extra, Some(agent().extra));
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.user == "system:serviceaccount:ns:agent"));

    // A patch of the spec (or of the status through the main resource) changes nothing there.
    let admin: Api<CertificateSigningRequest> = Api::all(fake.admin_client());
    let patched = admin
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"x": "y"}},
                "spec": {"signerName": "other.io/x", "username": "root"},
                "status": {"certificate": "Zm9v"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec, created.spec);
    assert!(patched.status.is_none());
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");

    // Garbage requests are refused at create.
    let mut bad = csr("b");
    bad.spec.request = ByteString(b"not pem".to_vec());
    assert_eq!(
        code(api.create(&PostParams::default(), &bad).await.unwrap_err()),
        422
    );
    let mut bad = csr("c");
    bad.spec.signer_name = "noslash".into();
    assert_eq!(
        code(api.create(&PostParams::default(), &bad).await.unwrap_err()),
        422
    );
    let mut bad = csr("d");
    bad.spec.expiration_seconds = Some(60);
    assert_eq!(
        code(api.create(&PostParams::default(), &bad).await.unwrap_err()),
        422
    );
    assert!(fake.get::<CertificateSigningRequest>(None, "b").is_none());
}

#[tokio::test]
async fn approval_and_signing_follow_the_servers_rules() {
    let fake = FakeApi::new();
    // RBAC: the approver may approve but not sign; the signer may sign but not approve.
    fake.authorize(
        |c| match (c.user.as_str(), c.resource.as_str(), c.verb.as_str()) {
            (_, "signers", v) => {
                c.name.as_deref() == Some(SIGNER)
                    && matches!(
                        (c.user.as_str(), v),
                        ("approver", "approve") | ("signer", "sign")
                    )
            }
            _ => true,
        },
    );
    let user = |u: &str| -> Api<CertificateSigningRequest> {
        Api::all(fake.client_as(Identity {
            username: u.into(),
            ..Default::default()
        }))
    };
    let created = user("agent")
        .create(&PostParams::default(), &csr("a"))
        .await
        .unwrap();

    // A certificate before approval: refused.
    let mut signed = created.clone();
    signed.status = Some(CertificateSigningRequestStatus {
        certificate: Some(ByteString(CERT.as_bytes().to_vec())),
        conditions: None,
    });
    assert_eq!(
        code(
            user("signer")
                .replace_status("a", &PostParams::default(), &signed)
                .await
                .unwrap_err()
        ),
        422
    );
    // Approval by someone without the signer's approve verb: 403.
    let approved = with_condition(created.clone(), "Approved");
    assert_eq!(
        code(
            user("signer")
                .replace_subresource("approval", "a", &PostParams::default(), &approved)
                .await
                .unwrap_err()
        ),
        403
    );
    // Approved and Denied together: refused.
    let both = with_condition(approved.clone(), "Denied");
    assert_eq!(
        code(
            user("approver")
                .replace_subresource("approval", "a", &PostParams::default(), &both)
                .await
                .unwrap_err()
        ),
        422
    );
    // Approval writes only the conditions (the spec and certificate in the body are ignored).
    let mut sneaky = approved.clone();
    sneaky.spec.signer_name = "other.io/x".into();
    sneaky.status.as_mut().unwrap().certificate = Some(ByteString(CERT.as_bytes().to_vec()));
    let stored = user("approver")
        .replace_subresource("approval", "a", &PostParams::default(), &sneaky)
        .await
        .unwrap();
    assert_eq!(stored.spec.signer_name, SIGNER);
    let st = stored.status.clone().unwrap();
    assert!(st.certificate.is_none());
    assert_eq!(st.conditions.unwrap()[0].type_, "Approved");
    // Approval cannot be taken back, nor set through /status.
    let mut unapproved = stored.clone();
    unapproved.status = None;
    assert_eq!(
        code(
            user("approver")
                .replace_subresource("approval", "a", &PostParams::default(), &unapproved)
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(
        code(
            user("signer")
                .replace_status(
                    "a",
                    &PostParams::default(),
                    &with_condition(stored.clone(), "Denied")
                )
                .await
                .unwrap_err()
        ),
        422
    );

    // Signing: the approver lacks `sign`; the signer may; non-PEM is refused.
    let mut signed = stored.clone();
    signed.status.as_mut().unwrap().certificate = Some(ByteString(CERT.as_bytes().to_vec()));
    assert_eq!(
        code(
            user("approver")
                .replace_status("a", &PostParams::default(), &signed)
                .await
                .unwrap_err()
        ),
        403
    );
    let mut garbage = stored.clone();
    garbage.status.as_mut().unwrap().certificate = Some(ByteString(b"nope".to_vec()));
    assert_eq!(
        code(
            user("signer")
                .replace_status("a", &PostParams::default(), &garbage)
                .await
                .unwrap_err()
        ),
        422
    );
    let done = user("signer")
        .replace_status("a", &PostParams::default(), &signed)
        .await
        .unwrap();
    assert_eq!(
        done.status
            .as_ref()
            .unwrap()
            .certificate
            .as_ref()
            .unwrap()
            .0,
        CERT.as_bytes()
    );
    // Once set, the certificate cannot change.
    let mut other = done.clone();
    other.status.as_mut().unwrap().certificate = Some(ByteString(
        CERT.replace("MIIBAA==", "MIIBAQ==").into_bytes(),
    ));
    assert_eq!(
        code(
            user("signer")
                .replace_status("a", &PostParams::default(), &other)
                .await
                .unwrap_err()
        ),
        422
    );

    // A denied request cannot be signed.
    user("agent")
        .create(&PostParams::default(), &csr("b"))
        .await
        .unwrap();
    let b: CertificateSigningRequest = fake.get(None, "b").unwrap();
    let denied = user("approver")
        .replace_subresource(
            "approval",
            "b",
            &PostParams::default(),
            &with_condition(b, "Denied"),
        )
        .await
        .unwrap();
    let mut signed = denied.clone();
    signed.status.as_mut().unwrap().certificate = Some(ByteString(CERT.as_bytes().to_vec()));
    assert_eq!(
        code(
            user("signer")
                .replace_status("b", &PostParams::default(), &signed)
                .await
                .unwrap_err()
        ),
        422
    );
    // Other subresources do not exist.
    let err = user("approver")
        .replace_subresource("scale", "b", &PostParams::default(), &denied)
        .await
        .unwrap_err();
    assert_eq!(code(err), 404);
}
