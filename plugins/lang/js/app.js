// The `lang` plugin in JavaScript: the predicate and filter every language in plugins/lang/
// implements. Built twice, as the toolchains emit it by default: componentize-js
// (StarlingMonkey) and jco's QuickJS backend.
//
// predicate args [header, value]: matches when the request's header equals value.
// filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
// 203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.

import { header } from 'router:plugin/request@0.2.0';
import { status } from 'router:plugin/response@0.2.0';

export const predicate = {
  validate(args) {
    if (args.length !== 2) {
      throw `expected [header, value], got ${args.length} args`;
    }
  },
  matches(args) {
    return header(args[0]) === args[1];
  },
};

export const filter = {
  validate(args) {
    if (args.length !== 1) {
      throw `expected [tag], got ${args.length} args`;
    }
  },
  onRequest(args) {
    const tag = args[0];
    if (header('x-reply') !== undefined) {
      const body = new TextEncoder().encode(`reply from ${tag}`);
      return { tag: 'respond', val: { status: 203, headers: [['x-tag', tag]], body } };
    }
    return {
      tag: 'proceed',
      val: { headers: [{ tag: 'set', val: ['x-tag', tag] }], path: undefined, query: undefined },
    };
  },
  onResponse(args) {
    return {
      status: undefined,
      headers: [{ tag: 'set', val: ['x-tag-response', `${args[0]}:${status()}`] }],
    };
  },
};
