//! The frontend's page in a real browser: headless Chromium, driven by chromedriver, against
//! the whole saga on the emulators. Orders placed through the form are followed live to
//! their outcome, also where the server lists nobody's orders (then with pasted uuids, and
//! across a reload), a refused order is explained by keyboard alone, and the page loads
//! nothing from elsewhere and breaks none of its own security policy.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the tests fail and say so.
//! `UPDATE_SCREENSHOT=1` also saves the finished page to `docs/screenshot.png`.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::TestStack;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, Url};
use saga::contract::PUSH_POLICY;
use saga::contract::Service;
use saga::runtime::config::OrderList;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
/// The desktop viewport, and so the screenshot's size.
const DESKTOP: (u32, u32) = (1000, 620);
/// A phone's viewport, in CSS pixels.
const PHONE: (u32, u32) = (390, 844);
const INSTALL: &str = "apt-get install chromium chromium-driver";

/// `name` on the `PATH`, where Debian's packages put it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("the browser tests need `{name}`, which is not installed: {INSTALL}"))
}

/// A chromedriver of this test's own, with a fresh browser profile.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Driver {
    async fn start() -> Driver {
        let chromedriver = program("chromedriver");
        program("chromium");
        let profile = std::env::temp_dir().join(format!("saga-browser-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the browser it starts joins: dropping the driver
            // ends both, even when a test panics before closing the session.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting chromedriver ({INSTALL}): {e}"));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let status = http.get(format!("{}/status", driver.url)).send().await;
            if status.is_ok_and(|s| s.status().is_success()) {
                return driver;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not come up on {}",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A headless Chromium session whose page is `width` × `height`.
    async fn browser(&self, (width, height): (u32, u32)) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-quic",
            "--no-proxy-server",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--lang=en-US",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", self.profile.join("profile").display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": program("chromium"), "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let browser = ClientBuilder::rustls()
            .expect("a rustls connector")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(self.profile.join("chromedriver.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!("starting headless Chromium: {e}\n{}", tail.join("\n"))
            });
        // The window's size counts the browser's own frame; the page gets what is left.
        let (outer_width, outer_height) = browser.get_window_size().await.unwrap();
        let inner = browser
            .execute("return [innerWidth, innerHeight]", vec![])
            .await
            .unwrap();
        let frame = |outer: u64, inner: &Value| u32::try_from(outer - inner.as_u64().unwrap()).unwrap();
        browser
            .set_window_size(
                width + frame(outer_width, &inner[0]),
                height + frame(outer_height, &inner[1]),
            )
            .await
            .unwrap();
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |signal: &str| {
            Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        signal("-TERM");
        let _ = self.child.wait();
        // The browser outlives its driver for a moment; its profile can go once it is gone.
        let started = Instant::now();
        while signal("-0") && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The browser's console, which chromedriver keeps beside the W3C protocol: CSP violations,
/// failed loads and script errors all land there.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base_url: &Url,
        session_id: Option<&str>,
    ) -> Result<Url, <Url as std::str::FromStr>::Err> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

/// The console entries at warning level or above, but for the 404s of `base`'s `/orders`:
/// Chromium logs every 4xx a script fetches, and there the page reads 404 as an answer (an
/// order not visible yet, the list turned off).
async fn console_problems(browser: &Client, base: &str) -> Vec<Value> {
    let log = browser.issue_cmd(ConsoleLog).await.unwrap();
    let expected = |e: &Value| {
        let message = e["message"].as_str().unwrap_or_default();
        e["source"] == "network"
            && message.starts_with(&format!("{base}/orders"))
            && message.contains("status of 404")
    };
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
        .filter(|e| !expected(e))
        .cloned()
        .collect()
}

/// What the page says next to the form, and what the console holds: for failure messages.
async fn what_went_wrong(browser: &Client) -> String {
    let form = match browser.find(Locator::Id("form-status")).await {
        Ok(status) => status.text().await.unwrap_or_default(),
        Err(e) => format!("no form status: {e}"),
    };
    let console = match browser.issue_cmd(ConsoleLog).await {
        Ok(log) => format!("{log:#}"),
        Err(e) => format!("no console log: {e}"),
    };
    format!("the form says {form:?}; the console holds {console}")
}

/// One order to type into the form.
struct Order {
    user: &'static str,
    item: &'static str,
    quantity: u32,
    payment_failure: bool,
}

const PAID: Order = Order {
    user: "jack",
    item: "widget",
    quantity: 3,
    payment_failure: false,
};
const DECLINED: Order = Order {
    user: "jill",
    item: "wotsit",
    quantity: 8,
    payment_failure: true,
};
const UNKNOWN_USER: Order = Order {
    user: "jimbo",
    item: "widget",
    quantity: 25,
    payment_failure: false,
};

async fn fill(browser: &Client, id: &str, text: &str) {
    let input = browser.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

/// Places `order` through the form and returns the uuid the page reports for it.
async fn place(browser: &Client, order: &Order) -> String {
    submit(browser, order).await;
    let status = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#form-status[data-uuid]"))
        .await;
    match status {
        Ok(status) => status.attr("data-uuid").await.unwrap().unwrap(),
        Err(e) => panic!(
            "the page reports no placed order ({e}): {}",
            what_went_wrong(browser).await
        ),
    }
}

/// Fills the form with `order` and presses the button.
async fn submit(browser: &Client, order: &Order) {
    fill(browser, "user", order.user).await;
    fill(browser, "item", order.item).await;
    fill(browser, "quantity", &order.quantity.to_string()).await;
    let checkbox = browser.find(Locator::Id("payment-error")).await.unwrap();
    if checkbox.is_selected().await.unwrap() != order.payment_failure {
        checkbox.click().await.unwrap();
    }
    browser
        .find(Locator::Id("place"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The card of saga `uuid` once it shows `status`.
async fn card(browser: &Client, uuid: &str, status: &str) -> Element {
    let css = format!("#orders li[data-uuid=\"{uuid}\"][data-status=\"{status}\"]");
    match browser.wait().at_most(WAIT).for_element(Locator::Css(&css)).await {
        Ok(card) => card,
        Err(e) => {
            let list = browser.find(Locator::Id("orders")).await.unwrap();
            panic!(
                "saga {uuid} never showed {status} ({e}); the list shows:\n{}",
                list.text().await.unwrap()
            )
        }
    }
}

fn assert_shows(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(text.contains(w), "expected {w:?} in:\n{text}");
    }
}

#[tokio::test]
async fn orders_placed_on_the_page_are_followed_live_to_their_outcome_and_its_reason() {
    let driver = Driver::start().await;
    let stack = TestStack::start("browser outcomes").await;
    let browser = driver.browser(DESKTOP).await;
    let base = stack.url(Service::Frontend);
    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Saga orders");

    let completed = place(&browser, &PAID).await;
    let declined = place(&browser, &DECLINED).await;
    let unknown = place(&browser, &UNKNOWN_USER).await;

    let success = card(&browser, &completed, "completed").await;
    assert_shows(
        &success.text().await.unwrap(),
        &["✓", "Completed", "3 × widget for jack", "invoice total 30"],
    );
    let failure = card(&browser, &declined, "compensated").await;
    assert_shows(
        &failure.text().await.unwrap(),
        &[
            "✗",
            "Failed · compensated",
            "8 × wotsit for jill",
            "payment declined",
            "failed step: payments",
            "reason: payment_declined",
            "Compensation finished",
        ],
    );
    let refused = card(&browser, &unknown, "compensated").await;
    assert_shows(
        &refused.text().await.unwrap(),
        &[
            "✗",
            "Failed · compensated",
            "user 'jimbo' does not exist",
            "failed step: orders",
            "reason: unknown_user",
            "Compensation finished",
        ],
    );

    // Success and failure differ in colour too, not only in words.
    assert_eq!(
        success.attr("data-outcome").await.unwrap().as_deref(),
        Some("success")
    );
    assert_eq!(
        failure.attr("data-outcome").await.unwrap().as_deref(),
        Some("failure")
    );
    assert_ne!(
        success.css_value("border-left-color").await.unwrap(),
        failure.css_value("border-left-color").await.unwrap()
    );

    assert_newest_first_and_announced(&browser, &[unknown, declined, completed]).await;
    assert_only_own_assets(&browser, &base).await;

    let png = browser.screenshot().await.unwrap();
    save_screenshot(&png);
    browser.close().await.unwrap();
}

#[tokio::test]
async fn an_order_the_page_could_not_place_is_placed_once_when_tried_again() {
    let driver = Driver::start().await;
    let stack = TestStack::start("browser retry").await;
    let browser = driver.browser(DESKTOP).await;
    browser
        .goto(&format!("{}/", stack.url(Service::Frontend)))
        .await
        .unwrap();

    // The first attempt records the saga, then cannot publish its message: 503, and the
    // page says it was not placed. The order exists, but has not started.
    stack.faults(Service::Frontend).fail_publishes(1);
    submit(&browser, &PAID).await;
    let refused = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#form-status.error"))
        .await
        .unwrap();
    assert_shows(&refused.text().await.unwrap(), &["Not placed"]);
    assert_eq!(stack.faults(Service::Frontend).publish_failures_left(), 0);

    // Placing it again sends the same idempotency key: the same saga goes on, no second
    // one starts.
    let uuid = place(&browser, &PAID).await;
    card(&browser, &uuid, "completed").await;
    let (code, list) = stack.get("/orders?limit=10").await;
    assert_eq!(code, 200, "{list}");
    let sagas: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(sagas, [uuid.as_str()], "one saga for one order placed twice");
    browser.close().await.unwrap();
}

/// The uuids of the cards, in the order shown.
async fn listed(browser: &Client) -> Vec<String> {
    browser
        .execute(
            "return [...document.querySelectorAll('#orders > li')].map(li => li.dataset.uuid)",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The cards are listed newest first, and status changes are announced to screen readers.
async fn assert_newest_first_and_announced(browser: &Client, uuids: &[String]) {
    assert_eq!(listed(browser).await, uuids, "newest first");

    let announcer = browser.find(Locator::Id("announcer")).await.unwrap();
    assert_eq!(
        announcer.attr("aria-live").await.unwrap().as_deref(),
        Some("polite")
    );
    let spoken = announcer.prop("textContent").await.unwrap().unwrap_or_default();
    assert!(
        spoken.starts_with("Order "),
        "status changes are announced: {spoken:?}"
    );
}

/// Everything the page loaded came from its own origin, its style and script did load (the
/// policy let them), nothing is inline, and the console holds no violation or error.
async fn assert_only_own_assets(browser: &Client, base: &str) {
    let page = browser
        .execute(
            r"return {
                origin: location.origin,
                loaded: performance.getEntriesByType('resource').map(e => e.name),
                references: [...document.querySelectorAll('[src], [href]')]
                    .map(e => e.src || e.href),
                inline: document.querySelectorAll('script:not([src]), style, [style]').length,
                styled: getComputedStyle(document.querySelector('section')).borderTopLeftRadius,
            }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(page["origin"], base);
    let own = format!("{base}/");
    let loaded: Vec<&str> = page["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for url in ["app.js", "app.css", "orders?limit=20"] {
        assert!(
            loaded.contains(&format!("{own}{url}").as_str()),
            "{url} in {loaded:?}"
        );
    }
    let references = page["references"].as_array().unwrap();
    let references = references.iter().map(|v| v.as_str().unwrap());
    for url in loaded.iter().copied().chain(references) {
        assert!(url.starts_with(&own), "{url} is not the page's own");
    }
    assert_eq!(page["inline"], 0, "nothing inline");
    assert_eq!(page["styled"], "8px", "the style sheet applies");
    let problems = console_problems(browser, base).await;
    assert!(problems.is_empty(), "the console reports problems: {problems:#?}");
}

fn save_screenshot(png: &[u8]) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-page.png");
    std::fs::write(&tmp, png).unwrap();
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshot.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, png).unwrap();
    }
}

#[tokio::test]
async fn with_the_list_turned_off_the_page_follows_the_orders_placed_from_it_and_pasted_uuids_across_a_reload()
 {
    let driver = Driver::start().await;
    let stack = TestStack::start_configured(
        e2e::Delivery::Emulator,
        "browser list off",
        &PUSH_POLICY,
        |config| {
            config.order_list = OrderList::Off;
        },
    )
    .await;
    // Orders placed elsewhere: one whose uuid is pasted into the page, one never shown.
    let pasted = stack
        .place(&json!({"item": "widget", "quantity": 2, "user": "jill"}))
        .await;
    let unseen = stack
        .place(&json!({"item": "widget", "quantity": 4, "user": "jack"}))
        .await;
    let browser = driver.browser(DESKTOP).await;
    let base = stack.url(Service::Frontend);
    browser.goto(&format!("{base}/")).await.unwrap();
    let note = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#list-off:not([hidden])"))
        .await
        .unwrap_or_else(|e| panic!("the page does not say the list is off: {e}"));
    assert_shows(&note.text().await.unwrap(), &["does not list everyone"]);

    let mine = place(&browser, &PAID).await;
    let paid = card(&browser, &mine, "completed").await;
    assert_shows(
        &paid.text().await.unwrap(),
        &["3 × widget for jack", "invoice total 30"],
    );

    // Something that is no uuid is refused, and says so.
    fill(&browser, "follow-uuid", "order 42").await;
    browser
        .find(Locator::Id("follow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refusal = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#follow-status.error"))
        .await
        .unwrap();
    assert_shows(&refusal.text().await.unwrap(), &["Not an order uuid"]);
    let input = browser.find(Locator::Id("follow-uuid")).await.unwrap();
    assert_eq!(input.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));

    // The status URL that POST /order answers with does as well as the bare uuid.
    fill(
        &browser,
        "follow-uuid",
        &format!("/orders/{}", pasted.to_uppercase()),
    )
    .await;
    browser
        .find(Locator::Id("follow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let followed = card(&browser, &pasted, "completed").await;
    assert_shows(&followed.text().await.unwrap(), &["2 × widget for jill"]);
    assert_eq!(
        listed(&browser).await,
        [pasted.clone(), mine.clone()],
        "newest first"
    );

    // The browser remembers what it follows; the server still lists nothing.
    browser.refresh().await.unwrap();
    card(&browser, &mine, "completed").await;
    card(&browser, &pasted, "completed").await;
    assert_eq!(listed(&browser).await, [pasted.clone(), mine.clone()]);
    assert!(!listed(&browser).await.contains(&unseen));
    assert_only_own_assets(&browser, &base).await;

    // Stop following one: it goes, and stays gone after a reload.
    let forget = format!("#orders li[data-uuid=\"{pasted}\"] button.forget");
    browser
        .find(Locator::Css(&forget))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(listed(&browser).await, std::slice::from_ref(&mine));
    browser.refresh().await.unwrap();
    card(&browser, &mine, "completed").await;
    assert_eq!(listed(&browser).await, [mine]);
    browser.close().await.unwrap();
}

#[tokio::test]
async fn on_a_phone_a_refused_order_placed_by_keyboard_alone_is_explained_and_its_field_focused() {
    let driver = Driver::start().await;
    let stack = TestStack::start("browser refused").await;
    let browser = driver.browser(PHONE).await;
    browser
        .goto(&format!("{}/", stack.url(Service::Frontend)))
        .await
        .unwrap();

    let layout = browser
        .execute(
            r"const [form, list] = document.querySelectorAll('section');
            return {
                overflow: document.documentElement.scrollWidth - innerWidth,
                stacked: list.getBoundingClientRect().top >= form.getBoundingClientRect().bottom,
            }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(layout["overflow"], 0, "nothing is wider than a phone");
    assert_eq!(
        layout["stacked"], true,
        "the list comes below the form on a phone"
    );

    // From the page's start: Tab to each field in turn, type over the quantity (a field
    // entered with Tab has its text selected), Tab on to the button and press Enter.
    let (tab, enter) = (char::from(Key::Tab), char::from(Key::Enter));
    keys(&browser, &[tab]).await;
    assert_eq!(focused(&browser).await, "user");
    keys(&browser, &[tab, tab]).await;
    assert_eq!(focused(&browser).await, "quantity");
    keys(&browser, &['0', tab, tab]).await;
    assert_eq!(focused(&browser).await, "place");
    keys(&browser, &[enter]).await;

    let status = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#form-status.error"))
        .await;
    let status = match status {
        Ok(status) => status,
        Err(e) => panic!(
            "the page explains no refusal ({e}): {}",
            what_went_wrong(&browser).await
        ),
    };
    assert_shows(&status.text().await.unwrap(), &["Not placed", "quantity"]);
    let quantity = browser.find(Locator::Id("quantity")).await.unwrap();
    assert_eq!(
        quantity.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(focused(&browser).await, "quantity");
    let outline: String = browser
        .execute(
            "return getComputedStyle(document.activeElement).outlineStyle",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(outline, "solid", "the focus is visible");
    let png = browser.screenshot().await.unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-phone.png"),
        png,
    )
    .unwrap();
    assert!(
        browser
            .find_all(Locator::Css("#orders > li"))
            .await
            .unwrap()
            .is_empty(),
        "nothing was placed"
    );
    browser.close().await.unwrap();
}

/// Presses and releases each key in turn, on whatever has the focus, as a person would.
async fn keys(browser: &Client, keys: &[char]) {
    let actions = keys
        .iter()
        .fold(KeyActions::new("keyboard".to_owned()), |a, &key| {
            a.then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key })
        });
    browser.perform_actions(actions).await.unwrap();
}

/// The id of the focused element.
async fn focused(browser: &Client) -> String {
    browser
        .active_element()
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_security_headers_and_revalidated_from_cache() {
    let stack = TestStack::start("browser headers").await;
    let base = stack.url(Service::Frontend);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let response = stack.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(
            header("content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{path} has an ETag: {etag:?}");

        let again = stack
            .http
            .get(format!("{base}{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path} revalidates");
        assert!(again.bytes().await.unwrap().is_empty());
    }
}
