// Where the endpoints are and how a request proves it comes from this page. Every URL
// is derived from the page's own address, so the client works behind any proxy or port.

/** An endpoint of this server over HTTP(S). */
export function httpUrl(path) {
  return new URL(path, location.href).href;
}

/** An endpoint of this server over ws: (or wss: when the page came over https:). */
export function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** `url?cursor=…` when there is a cursor to resume from. */
export function withCursor(url, cursor) {
  return cursor ? `${url}?cursor=${encodeURIComponent(cursor)}` : url;
}

/** The `_xsrf` cookie set by `GET /`, which every POST repeats (Tornado's rule). */
export function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : '';
}

const encoder = new TextEncoder();

/** Bytes of `text` on the wire (UTF-8). */
export function utf8Length(text) {
  return encoder.encode(text).length;
}

/** Small requests the round trip is the quickest of: the first may open a connection. */
const ROUND_TRIP_PROBES = 3;

/** This page's round trip to its server in ms: the quickest of a few small requests, so
 *  that opening a connection is not counted; null when the server does not answer. */
export async function measureRoundTrip() {
  let quickest = null;
  for (let i = 0; i < ROUND_TRIP_PROBES; i += 1) {
    const sent = performance.now();
    try {
      await fetch(httpUrl('/static/style.css'), { method: 'HEAD', cache: 'no-store' });
    } catch {
      return quickest;
    }
    const took = performance.now() - sent;
    quickest = quickest === null ? took : Math.min(quickest, took);
  }
  return quickest;
}
