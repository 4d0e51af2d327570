//! GitHub OAuth sign-in against the local GitHub-compatible server, over real HTTP: the browser redirect, the code
//! exchange with GitHub's 200-with-an-error answers, and the user behind the token (email fallbacks included).

use std::collections::HashMap;

use foundry::integrations::github::client::{GitHubApi, GitHubClient, GitHubError};
use foundry::integrations::github::fake::{FakeGitHub, FakeOAuthUser, Fixture};
use foundry::integrations::github::oauth::{GitHubOAuth, GitHubUser, OAuthConfig, OAuthError};
use serde_json::Value;

const TOKEN: &str = "test-token";
const CLIENT_ID: &str = "Iv1.foundry-test";
const SECRET: &str = "oauth-secret";
const CALLBACK: &str = "http://foundry.test/auth/github/callback?from=%2Fdashboard";

async fn server() -> FakeGitHub {
    let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), TOKEN).await;
    gh.configure_oauth_app(CLIENT_ID, SECRET);
    gh
}

fn config(gh: &FakeGitHub, scopes: &str) -> OAuthConfig {
    OAuthConfig {
        client_id: CLIENT_ID.to_string(),
        client_secret: SECRET.to_string(),
        web_base: gh.base_url(),
        api_base: gh.base_url(),
        redirect_uri: Some(CALLBACK.to_string()),
        scopes: scopes.to_string(),
    }
}

fn octocat(public_email: Option<&str>, emails: &[(&str, bool, bool)]) -> FakeOAuthUser {
    FakeOAuthUser {
        id: 583231,
        login: "octocat".to_string(),
        name: Some("The Octocat".to_string()),
        public_email: public_email.map(str::to_string),
        emails: emails.iter().map(|&(e, p, v)| (e.to_string(), p, v)).collect(),
    }
}

/// A "browser" that does not follow redirects, so the test sees GitHub's 302.
fn browser() -> reqwest::Client {
    foundry::integrations::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn query_of(url: &str) -> HashMap<String, String> {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Walks the browser through authorize and returns the callback URL GitHub redirects to.
async fn authorize(oauth: &GitHubOAuth, state: &str) -> String {
    let resp = browser().get(oauth.config().authorize_url(state)).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    resp.headers()["location"].to_str().unwrap().to_string()
}

#[actix_rt::test]
async fn full_flow_redirects_exchanges_and_falls_back_to_the_primary_verified_email() {
    let gh = server().await;
    gh.set_browser_user(octocat(
        None,
        &[("old@example.com", false, true), ("octo@example.com", true, true), ("new@example.com", false, false)],
    ));
    let oauth = GitHubOAuth::new(config(&gh, "read:user user:email read:org"));
    let state = "s t&a=te/ü";

    let callback = authorize(&oauth, state).await;
    assert!(callback.starts_with(&format!("{CALLBACK}&code=")), "{callback}");
    let params = query_of(&callback);
    assert_eq!(params["from"], "/dashboard", "the callback's own query survives");
    assert_eq!(params["state"], state, "state comes back verbatim");
    let code = &params["code"];
    assert_eq!(code.len(), 20);

    let token = oauth.exchange_code(code).await.unwrap();
    assert!(token.access_token.starts_with("gho_"), "{}", token.access_token);
    assert_eq!(token.token_type, "bearer");
    assert_eq!(token.scope, "read:user,user:email,read:org");

    let before = gh.request_count();
    let user = oauth.authenticated_user(&token.access_token).await.unwrap();
    assert_eq!(
        user,
        GitHubUser {
            id: 583231,
            login: "octocat".to_string(),
            name: Some("The Octocat".to_string()),
            email: Some("octo@example.com".to_string()),
            avatar_url: Some("https://avatars.githubusercontent.com/u/583231?v=4".to_string()),
        }
    );
    assert_eq!(gh.request_count() - before, 2, "/user, then /user/emails for the private email");

    // A second sign-in gets a different code.
    let again = query_of(&authorize(&oauth, "2").await);
    assert_ne!(&again["code"], code);
    gh.stop().await;
}

#[actix_rt::test]
async fn public_email_is_taken_as_is_and_no_primary_verified_means_none() {
    let gh = server().await;
    let oauth = GitHubOAuth::new(config(&gh, "read:user user:email"));

    let code = gh.issue_code(octocat(Some("public@example.com"), &[("private@example.com", true, true)]));
    let token = oauth.exchange_code(&code).await.unwrap();
    let before = gh.request_count();
    let user = oauth.authenticated_user(&token.access_token).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("public@example.com"));
    assert_eq!(gh.request_count() - before, 1, "no need for /user/emails");

    let unverified = octocat(None, &[("primary@example.com", true, false), ("verified@example.com", false, true)]);
    let token = oauth.exchange_code(&gh.issue_code(unverified)).await.unwrap();
    assert_eq!(oauth.authenticated_user(&token.access_token).await.unwrap().email, None);
    gh.stop().await;
}

#[actix_rt::test]
async fn without_the_email_scope_the_email_is_unknown_not_an_error() {
    let gh = server().await;
    gh.set_browser_user(octocat(None, &[("octo@example.com", true, true)]));
    let oauth = GitHubOAuth::new(config(&gh, "read:user"));
    let code = query_of(&authorize(&oauth, "x").await)["code"].clone();
    let token = oauth.exchange_code(&code).await.unwrap();
    assert_eq!(token.scope, "read:user");
    let user = oauth.authenticated_user(&token.access_token).await.unwrap();
    assert_eq!((user.login.as_str(), user.email), ("octocat", None));
    gh.stop().await;
}

#[actix_rt::test]
async fn codes_are_single_use() {
    let gh = server().await;
    let oauth = GitHubOAuth::new(config(&gh, "read:user"));
    let code = gh.issue_code(octocat(None, &[]));
    oauth.exchange_code(&code).await.unwrap();
    let err = oauth.exchange_code(&code).await.unwrap_err();
    assert_eq!(err, OAuthError::BadCode("The code passed is incorrect or expired.".to_string()));
    assert!(matches!(oauth.exchange_code("0123456789abcdef0123").await, Err(OAuthError::BadCode(_))));
    gh.stop().await;
}

#[actix_rt::test]
async fn wrong_client_credentials_are_reported_and_leave_the_code_usable() {
    let gh = server().await;
    let code = gh.issue_code(octocat(None, &[]));
    let wrong = GitHubOAuth::new(OAuthConfig { client_secret: "nope".to_string(), ..config(&gh, "read:user") });
    assert!(matches!(wrong.exchange_code(&code).await, Err(OAuthError::BadClientCredentials(_))));
    let unknown = GitHubOAuth::new(OAuthConfig { client_id: "other".to_string(), ..config(&gh, "read:user") });
    assert!(matches!(unknown.exchange_code(&code).await, Err(OAuthError::BadClientCredentials(_))));
    let right = GitHubOAuth::new(config(&gh, "read:user"));
    assert!(right.exchange_code(&code).await.is_ok());
    gh.stop().await;
}

#[actix_rt::test]
async fn a_different_redirect_uri_is_refused() {
    let gh = server().await;
    gh.set_browser_user(octocat(None, &[]));
    let oauth = GitHubOAuth::new(config(&gh, "read:user"));
    let code = query_of(&authorize(&oauth, "x").await)["code"].clone();
    let elsewhere = GitHubOAuth::new(OAuthConfig {
        redirect_uri: Some("http://evil.test/cb".to_string()),
        ..config(&gh, "read:user")
    });
    match elsewhere.exchange_code(&code).await {
        Err(OAuthError::OAuth { error, .. }) => assert_eq!(error, "redirect_uri_mismatch"),
        other => panic!("expected redirect_uri_mismatch, got {other:?}"),
    }
    assert!(oauth.exchange_code(&code).await.is_ok(), "the refused exchange did not use the code up");
    gh.stop().await;
}

#[actix_rt::test]
async fn unknown_tokens_are_unauthorized_and_oauth_tokens_reach_only_the_user_endpoints() {
    let gh = server().await;
    let oauth = GitHubOAuth::new(config(&gh, "read:user user:email"));
    assert_eq!(oauth.authenticated_user("gho_unknown").await.unwrap_err(), OAuthError::Unauthorized);
    assert_eq!(oauth.authenticated_user(TOKEN).await.unwrap_err().to_string(), "GitHub answered 404: Not Found");

    let token = oauth.exchange_code(&gh.issue_code(octocat(None, &[]))).await.unwrap();
    let as_api_client = GitHubClient::new(&gh.base_url(), &token.access_token);
    assert_eq!(as_api_client.list_user_repos().await.unwrap_err(), GitHubError::Unauthorized);
    assert_eq!(GitHubClient::new(&gh.base_url(), TOKEN).list_user_repos().await.unwrap().len(), 2);
    gh.stop().await;
}

#[actix_rt::test]
async fn authorize_refuses_unknown_apps_and_signed_out_browsers() {
    let gh = server().await;
    let oauth = GitHubOAuth::new(config(&gh, "read:user"));
    let unknown = OAuthConfig { client_id: "who".to_string(), ..config(&gh, "read:user") };
    let resp = browser().get(unknown.authorize_url("x")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = browser().get(oauth.config().authorize_url("x")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "nobody is signed in to the browser yet");
    gh.set_browser_user(octocat(None, &[]));
    let no_callback = OAuthConfig { redirect_uri: None, ..config(&gh, "read:user") };
    assert_eq!(browser().get(no_callback.authorize_url("x")).send().await.unwrap().status(), 400);
    assert_eq!(browser().get(oauth.config().authorize_url("x")).send().await.unwrap().status(), 302);
    gh.stop().await;
}

#[actix_rt::test]
async fn token_endpoint_speaks_json_and_form_like_github() {
    let gh = server().await;
    let url = format!("{}/login/oauth/access_token", gh.base_url());
    let http = browser();

    let code = gh.issue_code(octocat(None, &[]));
    let body = serde_json::json!({"client_id": CLIENT_ID, "client_secret": SECRET, "code": code});
    let resp = http.post(&url).header("accept", "application/json").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let granted: Value = resp.json().await.unwrap();
    assert_eq!(granted["token_type"], "bearer");
    assert_eq!(granted["scope"], "read:user,user:email");

    let resp = http.post(&url).header("accept", "application/json").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GitHub reports a used code with a 200");
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"], "bad_verification_code");
    assert_eq!(refused["error_description"], "The code passed is incorrect or expired.");
    assert!(refused["error_uri"].as_str().unwrap().starts_with("https://docs.github.com/"));

    // Without `Accept: application/json`, GitHub answers form-encoded.
    let code = gh.issue_code(octocat(None, &[]));
    let form = format!("client_id={CLIENT_ID}&client_secret={SECRET}&code={code}");
    let resp =
        http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(form).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/x-www-form-urlencoded"));
    let answer = query_of(&format!("?{}", resp.text().await.unwrap()));
    assert!(answer["access_token"].starts_with("gho_"));
    assert_eq!(answer["scope"], "read:user,user:email");

    let resp = http.get(format!("{}/user", gh.base_url())).bearer_auth(&answer["access_token"]).send().await.unwrap();
    assert_eq!(resp.headers()["x-oauth-scopes"], "read:user, user:email");
    let user: Value = resp.json().await.unwrap();
    assert_eq!((user["login"].as_str(), user["id"].as_i64()), (Some("octocat"), Some(583231)));
    assert!(user["email"].is_null());
    gh.stop().await;
}
