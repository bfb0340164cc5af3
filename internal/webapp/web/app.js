// Knocker web app: knock from a browser, see the grant and its countdown.
// The key stays on the device, and only where the user opts in; it never
// goes into a URL.
"use strict";

const KEY_STORE = "knocker.key";
const TTL_STORE = "knocker.ttl";
const RETURN_STORE = "knocker.return"; // sessionStorage: the last return, against loops
const $ = (id) => document.getElementById(id);

let countdownTimer = null;

// The portal: a gate with deny redirect sends a browser here with the page
// it wanted as ?return=. After a knock for this device the app goes back,
// but only to an http(s) URL whose host is on the server's return_hosts,
// read from /knock/portal at each visit (never from the offline cache) and
// compared with the host as this browser parses the URL: no open redirect.
const returnTarget = readReturn();
let returnVerdict = Promise.resolve("none");

function readReturn() {
	const raw = new URLSearchParams(location.search).get("return");
	if (raw === null) return null;
	let url = null;
	try { url = new URL(raw); } catch { /* not an absolute URL */ }
	if (url && (url.protocol !== "http:" && url.protocol !== "https:" || url.username || url.password)) url = null;
	return { raw, url };
}

// hostAllowed: an exact entry, or *.name for the subdomains of name (not
// name itself), as the server normalised them.
function hostAllowed(hostname, allowed) {
	const h = hostname.toLowerCase().replace(/\.$/, "");
	return allowed.some((e) => typeof e === "string" &&
		(e.startsWith("*.") ? h.length > e.length - 1 && h.endsWith(e.slice(1)) : h === e));
}

// checkReturn resolves to "allowed", "refused", "unchecked" (the server
// could not be asked) or "invalid" (no http(s) URL).
async function checkReturn(target) {
	if (!target.url) return "invalid";
	try {
		const res = await fetch("/knock/portal", { cache: "no-store" });
		const body = await res.json();
		if (!res.ok || !Array.isArray(body.return_hosts)) return "unchecked";
		return hostAllowed(target.url.hostname, body.return_hosts) ? "allowed" : "refused";
	} catch {
		return "unchecked";
	}
}

function showPortal(verdict) {
	const link = $("portal-link"), raw = $("portal-raw");
	$("portal-text").textContent = {
		allowed: "After the knock, you go back to:",
		refused: "This server does not send you back to this address; open it yourself if you trust it:",
		unchecked: "The server could not confirm this address, so you are not sent back to it:",
		invalid: "The return address is not a web page, so it is ignored:",
	}[verdict];
	if (verdict === "invalid") {
		raw.textContent = returnTarget.raw; // text only: never a link
	} else {
		link.href = returnTarget.url.href;
		link.textContent = returnTarget.url.href;
	}
	link.hidden = verdict === "invalid";
	raw.hidden = verdict !== "invalid";
	$("portal").dataset.state = verdict;
	show("portal", true);
}

// goBack follows the return URL after a knock, if it was allowed; the
// portal card's data-state says what it did. replace(): the back button
// must not lead to this page, which would knock and forward again.
async function goBack() {
	if (!returnTarget) return;
	const verdict = await returnVerdict;
	if (verdict === "allowed" && cameBackSoon(returnTarget.url.href)) {
		// The page sent this browser back here although it just knocked:
		// the grant does not open it (the key's scopes do not cover that
		// site, or the site sees another address). Going back again would
		// loop until the knock rate limit stops it.
		$("portal-text").textContent = "The knock succeeded, but it does not open this page (the key's scopes do not cover it, or the site sees another address). You are not sent back again:";
		$("portal").dataset.state = "looped";
		return;
	}
	$("portal").dataset.state = verdict === "allowed" ? "returning" : "stayed";
	if (verdict === "allowed") location.replace(returnTarget.url.href);
}

// cameBackSoon notes a return to href and reports whether this tab already
// returned there within the last minute.
function cameBackSoon(href) {
	const now = Date.now();
	try {
		const last = JSON.parse(sessionStorage.getItem(RETURN_STORE) || "null");
		sessionStorage.setItem(RETURN_STORE, JSON.stringify({ href, at: now }));
		return Boolean(last && last.href === href && now - last.at < 60000);
	} catch {
		return false; // storage disabled: no loop guard, as before
	}
}

function show(id, visible) { $(id).hidden = !visible; }

function showError(text) {
	$("error-text").textContent = text;
	show("error", true);
}

function clearError() { show("error", false); }

function savedKey() {
	try { return localStorage.getItem(KEY_STORE) || ""; } catch { return ""; }
}

function rememberKey(key) {
	try {
		if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
	} catch { /* storage disabled: the key lives in this page only */ }
	show("forget", Boolean(key));
}

function formatDuration(seconds) {
	const s = Math.max(0, Math.floor(seconds));
	const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
	const pad = (n) => String(n).padStart(2, "0");
	return (d ? d + "d " : "") + (d || h ? pad(h) + ":" : "") + pad(m) + ":" + pad(r);
}

function startCountdown(expiresAt) {
	clearInterval(countdownTimer);
	const until = new Date(expiresAt * 1000);
	const tick = () => {
		const left = expiresAt - Date.now() / 1000;
		if (left <= 0) {
			clearInterval(countdownTimer);
			$("result-title").textContent = "Expired";
			$("countdown").textContent = "00:00";
			$("result-note").textContent = "Knock again to reopen access.";
			refreshStatus();
			return;
		}
		$("countdown").textContent = formatDuration(left);
	};
	$("result-note").dataset.until = "Expires at " + until.toLocaleString() + ".";
	tick();
	countdownTimer = setInterval(tick, 1000);
}

// refreshStatus shows the caller's address as the server sees it.
async function refreshStatus() {
	try {
		const res = await fetch("/knock/status", { cache: "no-store" });
		const body = await res.json();
		if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
		$("my-ip").textContent = body.ip;
		$("my-state").textContent = body.whitelisted
			? "Whitelisted (" + body.entry + ") for " + formatDuration(body.expires_in_seconds) + "."
			: "Not whitelisted.";
	} catch (err) {
		$("my-ip").textContent = "unknown";
		$("my-state").textContent = navigator.onLine === false ? "You are offline." : "The server could not tell your address.";
	}
}

function errorMessage(status, body, retryAfter) {
	switch (status) {
	case 401: return "The server did not accept this key.";
	case 403: return "This key may only whitelist your own address: leave the other-address field empty.";
	case 429: return "Too many attempts. Try again in " + (retryAfter || "a few") + " seconds.";
	case 503: return "The knock service is busy or not ready. Try again shortly.";
	default:
		if (status >= 500) return "The server could not save the grant (" + status + "). Try again, or tell the administrator.";
		return (body && body.error) || "The server refused the knock (" + status + ").";
	}
}

async function knock(event) {
	if (event) event.preventDefault();
	clearError();
	const key = $("key").value.trim();
	if (!key) {
		showError("Enter your API key.");
		return;
	}
	const ttl = Number($("ttl").value);
	const remote = $("ip").value.trim();
	const payload = { ttl };
	if (remote) payload.ip_address = remote;
	rememberKey($("remember").checked ? key : "");
	try { localStorage.setItem(TTL_STORE, String(ttl)); } catch { /* ignore */ }

	$("knock").disabled = true;
	$("knock").textContent = "Knocking…";
	try {
		let res;
		try {
			res = await fetch("/knock", {
				method: "POST",
				cache: "no-store",
				headers: { "X-Api-Key": key, "Content-Type": "application/json" },
				body: JSON.stringify(payload),
			});
		} catch {
			showError("Cannot reach the knock server. Check your connection and try again.");
			return;
		}
		let body = null;
		try { body = await res.json(); } catch { /* not JSON */ }
		if (!res.ok) {
			showError(errorMessage(res.status, body, res.headers.get("Retry-After")));
			if (res.status === 401) rememberKey("");
			return;
		}
		$("result-title").textContent = "Access open";
		$("result-entry").textContent = body.whitelisted_entry;
		const capped = body.expires_in_seconds < ttl;
		startCountdown(body.expires_at);
		$("result-note").textContent = $("result-note").dataset.until +
			(capped ? " The server capped the time to " + formatDuration(body.expires_in_seconds) + " for this key." : "");
		show("result", true);
		if (!remote) goBack(); // a grant for another address does not let this browser in
		refreshStatus();
	} finally {
		$("knock").disabled = false;
		$("knock").textContent = "Knock";
	}
}

function init() {
	$("knock-form").addEventListener("submit", knock);
	$("forget").addEventListener("click", () => {
		rememberKey("");
		$("key").value = "";
		$("remember").checked = false;
	});
	try {
		const ttl = localStorage.getItem(TTL_STORE);
		if (ttl && [...$("ttl").options].some((o) => o.value === ttl)) $("ttl").value = ttl;
	} catch { /* ignore */ }
	if (returnTarget) {
		returnVerdict = checkReturn(returnTarget);
		returnVerdict.then(showPortal);
	}
	const key = savedKey();
	refreshStatus();
	if (key) {
		// The original's "knock on reload": a saved key knocks at once.
		$("key").value = key;
		$("remember").checked = true;
		show("forget", true);
		knock();
	}
	if ("serviceWorker" in navigator) {
		navigator.serviceWorker.register("/sw.js").catch(() => { /* the app works without it */ });
	}
}

document.addEventListener("DOMContentLoaded", init);
