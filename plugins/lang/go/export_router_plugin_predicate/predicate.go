// The `lang` plugin in Go (bindings from `wit-bindgen go`): the predicate. See ../README.md.
//
// args [header, value]: matches when the request's header equals value.
package export_router_plugin_predicate

import (
	"wit_component/collector"
	"wit_component/router_plugin_request"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Each route's args by the number routerd gave them in Configure (once per instance).
var configs = map[uint32][]string{}

func Configure(config uint32, args []string) witTypes.Result[witTypes.Unit, string] {
	defer collector.AfterCall()
	if len(args) != 2 {
		return witTypes.Err[witTypes.Unit, string]("expected 2 args: [header, value]")
	}
	configs[config] = args
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

func Matches(config uint32) bool {
	defer collector.AfterCall()
	args := configs[config]
	if len(args) != 2 {
		return false
	}
	value := router_plugin_request.Header(args[0])
	return value.IsSome() && value.Some() == args[1]
}
