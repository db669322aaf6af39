// An auth check in JavaScript, built with componentize-js and its default features (which import
// `wasi:http`), to show `fetch` from a plugin: args `[url]`. The request phase fetches `url` with
// the request's `authorization` header; a 200 lets the request through, anything else (or a
// failed fetch: an origin not on the plugin's `http.allow` list, no answer in time) answers 403.
//
// `onRequest` is `async`: componentize-js runs the event loop until an export's promise settles.
// A rejected promise traps the instance, so every error is caught here.

import { header } from 'router:plugin/request@0.3.1';
import { write } from 'router:plugin/log@0.3.1';

const urls = new Map();
const encoder = new TextEncoder();

function deny(text) {
  return {
    tag: 'respond',
    val: { status: 403, headers: [['content-type', 'text/plain']], body: encoder.encode(text) },
  };
}

const PROCEED = { tag: 'proceed', val: { headers: [], path: undefined, query: undefined } };

export const filter = {
  configure(config, args) {
    if (args.length !== 1) {
      throw 'expected 1 arg: [auth-url]';
    }
    try {
      new URL(args[0]);
    } catch (e) {
      throw `bad auth url: ${args[0]}`;
    }
    urls.set(config, args[0]);
    return { request: true, response: false };
  },

  async onRequest(config) {
    const url = urls.get(config);
    if (url === undefined) {
      return deny('auth filter not configured');
    }
    try {
      const headers = {};
      const auth = header('authorization');
      if (auth != null) {
        headers['authorization'] = auth;
      }
      const res = await fetch(url, { method: 'GET', headers });
      // Read the body either way (the response's stream must be consumed or dropped).
      const text = await res.text();
      if (res.status === 200) {
        return PROCEED;
      }
      return deny(text);
    } catch (e) {
      write('warn', `auth fetch ${url} failed: ${e}`);
      return deny(`auth check failed`);
    }
  },

  onResponse(config) {
    return { status: undefined, headers: [] };
  },
};
