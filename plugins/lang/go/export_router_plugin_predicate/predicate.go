// The `lang` plugin in Go (bindings from `wit-bindgen go`): the predicate. See ../README.md.
//
// args [header, value]: matches when the request's header equals value.
package export_router_plugin_predicate

import (
	"wit_component/collector"
	"wit_component/router_plugin_request"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func Validate(args []string) witTypes.Result[witTypes.Unit, string] {
	defer collector.AfterCall()
	if len(args) != 2 {
		return witTypes.Err[witTypes.Unit, string]("expected 2 args: [header, value]")
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

func Matches(args []string) bool {
	defer collector.AfterCall()
	if len(args) != 2 {
		return false
	}
	value := router_plugin_request.Header(args[0])
	return value.IsSome() && value.Some() == args[1]
}
