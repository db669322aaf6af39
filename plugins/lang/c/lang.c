// The `lang` plugin in C (bindings from `wit-bindgen c`): the predicate and filter every
// language in plugins/lang/ implements.
//
// predicate args [header, value]: matches when the request's header equals value.
// filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
// 203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.
//
// routerd gives each route's args once per instance (`configure`, under a number the calls then
// name); they are kept here by that number.
//
// Ownership, as wit-bindgen's C bindings define it: `configure` owns its `args` (kept, or freed
// when refused); what an export returns is malloc'd and freed by the bindings after routerd has
// read it; a string an import returns is ours to free.

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static void set_error(plugin_string_t *err, const char *message) {
    plugin_string_dup(err, message);
}

static void dup_string(plugin_string_t *out, const plugin_string_t *in) {
    plugin_string_dup_n(out, (const char *)in->ptr, in->len);
}

// Route args by config number, for the predicate and the filter apart.
struct configs {
    plugin_list_string_t *args;
    size_t len;
};
static struct configs predicate_configs, filter_configs;

// Keeps `args` (taking ownership) under `config`.
static bool keep(struct configs *c, uint32_t config, plugin_list_string_t *args) {
    if (config >= c->len) {
        size_t len = (size_t)config + 1;
        plugin_list_string_t *grown = realloc(c->args, len * sizeof *grown);
        if (grown == NULL) return false;
        memset(grown + c->len, 0, (len - c->len) * sizeof *grown);
        c->args = grown;
        c->len = len;
    }
    plugin_list_string_free(&c->args[config]);
    c->args[config] = *args;
    return true;
}

// The args kept under `config`: an empty list if there are none.
static const plugin_list_string_t *args_of(const struct configs *c, uint32_t config) {
    static const plugin_list_string_t none = {0};
    return config < c->len ? &c->args[config] : &none;
}

bool exports_router_plugin_predicate_configure(uint32_t config, plugin_list_string_t *args,
                                               plugin_string_t *err) {
    if (args->len != 2 || !keep(&predicate_configs, config, args)) {
        plugin_list_string_free(args);
        set_error(err, "expected 2 args: [header, value]");
        return false;
    }
    return true;
}

bool exports_router_plugin_predicate_matches(uint32_t config) {
    const plugin_list_string_t *args = args_of(&predicate_configs, config);
    bool matched = false;
    if (args->len == 2) {
        plugin_string_t value;
        if (router_plugin_request_header(&args->ptr[0], &value)) {
            matched = value.len == args->ptr[1].len &&
                      memcmp(value.ptr, args->ptr[1].ptr, value.len) == 0;
            plugin_string_free(&value);
        }
    }
    return matched;
}

bool exports_router_plugin_filter_configure(uint32_t config, plugin_list_string_t *args,
                                            exports_router_plugin_filter_phases_t *ret,
                                            plugin_string_t *err) {
    if (args->len != 1 || !keep(&filter_configs, config, args)) {
        plugin_list_string_free(args);
        set_error(err, "expected 1 arg: [tag]");
        return false;
    }
    // Both phases run (leave one out and routerd never calls it).
    *ret = EXPORTS_ROUTER_PLUGIN_FILTER_PHASES_REQUEST | EXPORTS_ROUTER_PLUGIN_FILTER_PHASES_RESPONSE;
    return true;
}

// One header `name: tag`, newly allocated.
static void tag_header(router_plugin_types_header_t *h, const char *name,
                       const plugin_string_t *tag) {
    plugin_string_dup(&h->f0, name);
    dup_string(&h->f1, tag);
}

void exports_router_plugin_filter_on_request(uint32_t config,
                                             exports_router_plugin_filter_request_action_t *ret) {
    const plugin_list_string_t *args = args_of(&filter_configs, config);
    plugin_string_t empty = {0};
    const plugin_string_t *tag = args->len > 0 ? &args->ptr[0] : &empty;
    plugin_string_t name, reply_header;
    plugin_string_set(&name, "x-reply");
    bool reply = router_plugin_request_header(&name, &reply_header);
    if (reply) {
        plugin_string_free(&reply_header);
        static const char prefix[] = "reply from ";
        size_t body_len = sizeof(prefix) - 1 + tag->len;
        uint8_t *body = malloc(body_len);
        memcpy(body, prefix, sizeof(prefix) - 1);
        memcpy(body + sizeof(prefix) - 1, tag->ptr, tag->len);
        router_plugin_types_header_t *headers = malloc(sizeof *headers);
        tag_header(&headers[0], "x-tag", tag);
        ret->tag = ROUTER_PLUGIN_TYPES_REQUEST_ACTION_RESPOND;
        ret->val.respond.status = 203;
        ret->val.respond.headers = (router_plugin_types_list_header_t){headers, 1};
        ret->val.respond.body = (plugin_list_u8_t){body, body_len};
    } else {
        router_plugin_types_header_op_t *ops = malloc(sizeof *ops);
        ops[0].tag = ROUTER_PLUGIN_TYPES_HEADER_OP_SET;
        tag_header(&ops[0].val.set, "x-tag", tag);
        ret->tag = ROUTER_PLUGIN_TYPES_REQUEST_ACTION_PROCEED;
        ret->val.proceed.headers = (router_plugin_types_list_header_op_t){ops, 1};
        ret->val.proceed.path.is_some = false;
        ret->val.proceed.query.is_some = false;
    }
}

void exports_router_plugin_filter_on_response(uint32_t config,
                                              exports_router_plugin_filter_response_edits_t *ret) {
    const plugin_list_string_t *args = args_of(&filter_configs, config);
    plugin_string_t empty = {0};
    const plugin_string_t *tag = args->len > 0 ? &args->ptr[0] : &empty;
    unsigned status = router_plugin_response_status();
    // TAG ":" and at most five digits.
    char digits[6];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + status % 10);
        status /= 10;
    } while (status > 0 && n < sizeof digits);
    size_t len = tag->len + 1 + n;
    uint8_t *value = malloc(len);
    memcpy(value, tag->ptr, tag->len);
    value[tag->len] = ':';
    for (size_t i = 0; i < n; i++) value[tag->len + 1 + i] = (uint8_t)digits[n - 1 - i];
    router_plugin_types_header_op_t *ops = malloc(sizeof *ops);
    ops[0].tag = ROUTER_PLUGIN_TYPES_HEADER_OP_SET;
    plugin_string_dup(&ops[0].val.set.f0, "x-tag-response");
    ops[0].val.set.f1 = (plugin_string_t){value, len};
    ret->status.is_some = false;
    ret->headers = (router_plugin_types_list_header_op_t){ops, 1};
}
