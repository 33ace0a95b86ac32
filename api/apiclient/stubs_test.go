package apiclient_test

import (
	"reflect"
	"testing"

	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/api/apirpc"
)

// Every method of every service has a client stub: the stubs are
// generated, and this fails when api/apiclient was not regenerated after
// a service changed (make proto).
func TestEveryMethodHasAStub(t *testing.T) {
	clients := map[string]reflect.Type{}
	for _, c := range []any{apiclient.JobServiceClient{}, apiclient.NodeServiceClient{}, apiclient.AgentServiceClient{},
		apiclient.OperatorClient{}, apiclient.AgentLogsClient{}, apiclient.ReservationServiceClient{}} {
		clients[reflect.TypeOf(c).Name()] = reflect.TypeOf(c)
	}
	svcs := apirpc.File_api_apirpc_service_proto.Services()
	if svcs.Len() != len(clients) {
		t.Errorf("service.proto has %d services, apiclient %d clients: regenerate with make proto and list the new client here", svcs.Len(), len(clients))
	}
	for i := range svcs.Len() {
		svc := svcs.Get(i)
		typ, ok := clients[string(svc.Name())+"Client"]
		if !ok {
			t.Errorf("service %s has no apiclient.%sClient", svc.FullName(), svc.Name())
			continue
		}
		for j := range svc.Methods().Len() {
			m := svc.Methods().Get(j)
			if _, ok := typ.MethodByName(string(m.Name())); !ok {
				t.Errorf("%s has no stub %s.%s: regenerate with make proto", m.FullName(), typ, m.Name())
			}
		}
	}
}
