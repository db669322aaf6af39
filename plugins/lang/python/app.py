"""The `lang` plugin in Python: the predicate and filter every language in plugins/lang/ implements.

predicate args [header, value]: matches when the request's header equals value.
filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.

routerd gives each route's args once per instance (`configure`, under a number the calls then
name); they are kept here by that number.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import filter as filter_iface
from wit_world.imports import request, response, types

PREDICATE_ARGS = {}
FILTER_ARGS = {}


class Predicate(exports.Predicate):
    def configure(self, config, args):
        if len(args) != 2:
            raise Err("expected 2 args: [header, value]")
        PREDICATE_ARGS[config] = args

    def matches(self, config):
        args = PREDICATE_ARGS.get(config)
        return args is not None and request.header(args[0]) == args[1]


class Filter(exports.Filter):
    def configure(self, config, args):
        if len(args) != 1:
            raise Err("expected 1 arg: [tag]")
        FILTER_ARGS[config] = args
        # Both phases run (leave one out and routerd never calls it).
        return filter_iface.Phases.REQUEST | filter_iface.Phases.RESPONSE

    def on_request(self, config):
        tag = FILTER_ARGS.get(config, [""])[0]
        if request.header("x-reply") is not None:
            return types.RequestAction_Respond(
                types.Reply(203, [("x-tag", tag)], f"reply from {tag}".encode())
            )
        edits = types.RequestEdits([types.HeaderOp_Set(("x-tag", tag))], None, None)
        return types.RequestAction_Proceed(edits)

    def on_response(self, config):
        value = f"{FILTER_ARGS.get(config, [''])[0]}:{response.status()}"
        return types.ResponseEdits(None, [types.HeaderOp_Set(("x-tag-response", value))])
