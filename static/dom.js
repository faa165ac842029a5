// Building DOM without markup: message text only ever reaches the page as text nodes.

/** `el('p', {className: 'x'}, 'text', child)`. Strings become text nodes, never markup. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with `attributes` and optional text. */
export function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/gi;

/** Message text as DOM: text nodes, with http(s) URLs as links. Trailing punctuation
 *  stays outside the link ("see https://x.example." links without the dot). */
export function renderBody(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = match[0].replace(/[.,;:!?)\]}]+$/, '');
    if (!/^https?:\/\/[^/]/i.test(url)) continue;
    fragment.append(text.slice(last, match.index));
    fragment.append(el('a', { href: url, rel: 'nofollow noopener noreferrer', target: '_blank' }, url));
    last = match.index + url.length;
  }
  fragment.append(text.slice(last));
  return fragment;
}
