"""The `lang` plugin in Python: the predicate and filter every language in plugins/lang/ implements.

predicate args [header, value]: matches when the request's header equals value.
filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import request, response, types


class Predicate(exports.Predicate):
    def validate(self, args):
        if len(args) != 2:
            raise Err("expected 2 args: [header, value]")

    def matches(self, args):
        return request.header(args[0]) == args[1]


class Filter(exports.Filter):
    def validate(self, args):
        if len(args) != 1:
            raise Err("expected 1 arg: [tag]")

    def on_request(self, args):
        tag = args[0]
        if request.header("x-reply") is not None:
            return types.RequestAction_Respond(
                types.Reply(203, [("x-tag", tag)], f"reply from {tag}".encode())
            )
        edits = types.RequestEdits([types.HeaderOp_Set(("x-tag", tag))], None, None)
        return types.RequestAction_Proceed(edits)

    def on_response(self, args):
        value = f"{args[0]}:{response.status()}"
        return types.ResponseEdits(None, [types.HeaderOp_Set(("x-tag-response", value))])
