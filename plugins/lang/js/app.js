// The `lang` plugin in JavaScript: the predicate and filter every language in plugins/lang/
// implements. Built twice, as the toolchains emit it by default: componentize-js
// (StarlingMonkey) and jco's QuickJS backend.
//
// predicate args [header, value]: matches when the request's header equals value.
// filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
// 203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.
//
// routerd gives each route's args once per instance (`configure`, under a number the calls
// then name); they are kept here by that number.

import { header } from 'router:plugin/request@0.3.1';
import { status } from 'router:plugin/response@0.3.1';

const predicateArgs = new Map();
const filterArgs = new Map();

// UTF-8 bytes of a string. (QuickJS has no TextEncoder; this runs on both engines.)
function utf8(text) {
  const bytes = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) {
      bytes.push(c);
    } else if (c < 0x800) {
      bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    } else if (c < 0x10000) {
      bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    } else {
      bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
  }
  return new Uint8Array(bytes);
}

export const predicate = {
  configure(config, args) {
    if (args.length !== 2) {
      throw "expected 2 args: [header, value]";
    }
    predicateArgs.set(config, args);
  },
  matches(config) {
    const args = predicateArgs.get(config);
    return args !== undefined && header(args[0]) === args[1];
  },
};

export const filter = {
  configure(config, args) {
    if (args.length !== 1) {
      throw "expected 1 arg: [tag]";
    }
    filterArgs.set(config, args);
    // Both phases run (leave one out and routerd never calls it).
    return { request: true, response: true };
  },
  onRequest(config) {
    const tag = (filterArgs.get(config) ?? [''])[0];
    // A missing header is undefined under componentize-js and null under QuickJS.
    if (header('x-reply') != null) {
      const body = utf8(`reply from ${tag}`);
      return { tag: 'respond', val: { status: 203, headers: [['x-tag', tag]], body } };
    }
    return {
      tag: 'proceed',
      val: { headers: [{ tag: 'set', val: ['x-tag', tag] }], path: undefined, query: undefined },
    };
  },
  onResponse(config) {
    const tag = (filterArgs.get(config) ?? [''])[0];
    return {
      status: undefined,
      headers: [{ tag: 'set', val: ['x-tag-response', `${tag}:${status()}`] }],
    };
  },
};
