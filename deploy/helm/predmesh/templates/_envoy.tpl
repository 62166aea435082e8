{{/*
Envoy bootstrap: everything but the health listener comes over ADS from the control plane.
The admin API listens on a unix socket only; a static listener on envoy.healthPort exposes
just /ready (probes) and /stats/prometheus (scrapes) from it.
*/}}
{{- define "predmesh.envoyBootstrap" -}}
{{- $ev := .root.Values.envoy -}}
node:
  cluster: {{ include "predmesh.envoyNodeCluster" .root }}
admin:
  address:
    pipe:
      path: /var/run/envoy/admin.sock
      mode: 384
  ignore_global_conn_limit: true
# Envoy's edge guidance: a fixed heap budget (shrink the heap at 95%, stop accepting requests at
# 98% instead of being OOM-killed) and a cap on downstream connections (the global connection limit).
overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
    - name: envoy.resource_monitors.fixed_heap
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
        max_heap_size_bytes: {{ int64 $ev.overload.maxHeapBytes }}
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ int64 $ev.overload.maxDownstreamConnections }}
  actions:
    - name: envoy.overload_actions.shrink_heap
      triggers:
        - name: envoy.resource_monitors.fixed_heap
          threshold: {value: 0.95}
    - name: envoy.overload_actions.stop_accepting_requests
      triggers:
        - name: envoy.resource_monitors.fixed_heap
          threshold: {value: 0.98}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
      - envoy_grpc:
          cluster_name: xds
  cds_config:
    ads: {}
    resource_api_version: V3
  lds_config:
    ads: {}
    resource_api_version: V3
static_resources:
  clusters:
    - name: xds
      type: STRICT_DNS
      connect_timeout: 1s
      dns_lookup_family: V4_PREFERRED
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options:
              connection_keepalive:
                interval: 30s
                timeout: 5s
      {{- if include "predmesh.mtlsCertificates" .root }}
      # ADS over mutual TLS: Envoy presents its "envoy" certificate (the control plane allows only
      # that identity on the config stream) and accepts only the "controlplane" identity.
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: controlplane
          common_tls_context:
            alpn_protocols: [h2]
            tls_params: {tls_minimum_protocol_version: TLSv1_2}
            # Certificate and CA through file-based SDS (predmesh.envoyXdsSds): Envoy re-reads the
            # mounted Secret when kubelet swaps it, so a renewed certificate needs no restart.
            tls_certificate_sds_secret_configs:
              - name: xds-client-cert
                sds_config:
                  path_config_source: {path: /etc/envoy/xds-client-cert.yaml}
                  resource_api_version: V3
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names:
                  - san_type: DNS
                    matcher: {exact: controlplane}
              validation_context_sds_secret_config:
                name: xds-ca
                sds_config:
                  path_config_source: {path: /etc/envoy/xds-ca.yaml}
                  resource_api_version: V3
      {{- end }}
      load_assignment:
        cluster_name: xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ include "predmesh.componentName" .cp }}.{{ .root.Release.Namespace }}.svc
                      port_value: {{ .cp.values.port }}
    - name: admin
      type: STATIC
      connect_timeout: 0.25s
      load_assignment:
        cluster_name: admin
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    pipe:
                      path: /var/run/envoy/admin.sock
  listeners:
    - name: health
      ignore_global_conn_limit: true  # probes and scrapes still answer at the connection cap
      address:
        socket_address:
          address: 0.0.0.0
          port_value: {{ $ev.healthPort }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: health
                codec_type: AUTO
                route_config:
                  name: health
                  virtual_hosts:
                    - name: health
                      domains: ["*"]
                      routes:
                        - match:
                            path: /ready
                          route:
                            cluster: admin
                        - match:
                            path: /stats/prometheus
                          route:
                            cluster: admin
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}

{{/* File-based SDS documents for Envoy's ADS client certificate (keys of the bootstrap ConfigMap). */}}
{{- define "predmesh.envoyXdsSds" -}}
xds-client-cert.yaml: |
  resources:
    - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
      name: xds-client-cert
      tls_certificate:
        certificate_chain: {filename: /etc/envoy-tls/tls.crt}
        private_key: {filename: /etc/envoy-tls/tls.key}
        watched_directory: {path: /etc/envoy-tls}
xds-ca.yaml: |
  resources:
    - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
      name: xds-ca
      validation_context:
        trusted_ca: {filename: /etc/envoy-tls/ca.crt}
        watched_directory: {path: /etc/envoy-tls}
{{- end -}}

{{/* node.cluster of the edge Envoys; the control plane serves its snapshot to this cluster. */}}
{{- define "predmesh.envoyNodeCluster" -}}
{{- include "predmesh.componentName" (dict "root" . "component" "envoy") -}}
{{- end -}}
