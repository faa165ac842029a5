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
