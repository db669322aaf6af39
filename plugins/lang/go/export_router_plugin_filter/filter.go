// The `lang` plugin in Go (bindings from `wit-bindgen go`): the filter. See ../README.md.
//
// args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered 203
// "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.
package export_router_plugin_filter

import (
	"strconv"

	"wit_component/collector"
	"wit_component/router_plugin_filter"
	"wit_component/router_plugin_request"
	"wit_component/router_plugin_response"
	"wit_component/router_plugin_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

type header = witTypes.Tuple2[string, string]

// Each route's args by the number routerd gave them in Configure (once per instance).
var configs = map[uint32][]string{}

func tagOf(config uint32) string {
	args := configs[config]
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func Configure(config uint32, args []string) witTypes.Result[router_plugin_filter.Phases, string] {
	defer collector.AfterCall()
	if len(args) != 1 {
		return witTypes.Err[router_plugin_filter.Phases, string]("expected 1 arg: [tag]")
	}
	configs[config] = args
	// Both phases run (leave one out and routerd never calls it).
	phases := router_plugin_filter.Phases_Request | router_plugin_filter.Phases_Response
	return witTypes.Ok[router_plugin_filter.Phases, string](phases)
}

func OnRequest(config uint32) router_plugin_types.RequestAction {
	defer collector.AfterCall()
	tag := tagOf(config)
	if router_plugin_request.Header("x-reply").IsSome() {
		return router_plugin_types.MakeRequestActionRespond(router_plugin_types.Reply{
			Status:  203,
			Headers: []header{{F0: "x-tag", F1: tag}},
			Body:    []uint8("reply from " + tag),
		})
	}
	return router_plugin_types.MakeRequestActionProceed(router_plugin_types.RequestEdits{
		Headers: []router_plugin_types.HeaderOp{
			router_plugin_types.MakeHeaderOpSet(header{F0: "x-tag", F1: tag}),
		},
		Path:  witTypes.None[string](),
		Query: witTypes.None[string](),
	})
}

func OnResponse(config uint32) router_plugin_types.ResponseEdits {
	defer collector.AfterCall()
	status := strconv.Itoa(int(router_plugin_response.Status()))
	return router_plugin_types.ResponseEdits{
		Status: witTypes.None[uint16](),
		Headers: []router_plugin_types.HeaderOp{
			router_plugin_types.MakeHeaderOpSet(header{F0: "x-tag-response", F1: tagOf(config) + ":" + status}),
		},
	}
}
