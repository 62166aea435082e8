"""Unknown-field rejection for HTTP/JSON callers at the edge (a Lua filter in front of the transcoder).

Envoy's grpc_json_transcoder drops JSON fields the request message does not define, so a typo
(`"entitiy_id"`) or a field of a newer API version would be scored as if it had not been sent. This
module builds, from the same descriptor set the transcoder gets, the accepted field names of every
request message reachable from the REST paths (`/v1/predict`...), and a Lua filter that parses the
JSON body and answers 400 for a name it does not know (the edge's local reply mapper makes that
`{"code": 3, "message": "unknown field \"x\" in <message>"}`, like every other error).
Maps, google.protobuf.Struct/Value and other well-known types take any keys. A body that is not
valid JSON passes through: the transcoder rejects it (as JSON, through the edge's local reply mapper).

Only the REST paths are checked (the gRPC-style JSON bindings `/predmesh.v1.PredictionService/...`
stream through unbuffered as before). The filter needs the whole body: the edge's buffer filter
raises the limit to `max_request_bytes` for those paths (`resources._listener`).

Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2

FREE = "*"  # any keys (maps, Struct, well-known types)
SCALAR = ""  # a leaf: nothing to check inside


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        full = f"{prefix}.{message.name}"
        out[full] = message
        for nested in message.nested_type:
            add(full, nested)

    for file in fds.file:
        for message in file.message_type:
            add(file.package, message)
    return out


def accepted_fields(descriptor_set: bytes, roots: list[str]) -> dict[str, dict[str, str]]:
    """{message: {JSON name: kind}} for `roots` and every message they contain; kind is SCALAR, FREE or
    `m:<message>`. Both the proto field name and its lowerCamel JSON name are accepted (proto3 JSON)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    messages = _messages(fds)
    schema: dict[str, dict[str, str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in schema or name not in messages:
            continue
        fields: dict[str, str] = {}
        for f in messages[name].field:
            kind = SCALAR
            if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
                target = f.type_name.lstrip(".")
                nested = messages.get(target)
                if target.startswith("google.protobuf.") or nested is None or nested.options.map_entry:
                    kind = FREE
                else:
                    kind = f"m:{target}"
                    todo.append(target)
            for alias in {f.name, f.json_name or _camel(f.name)}:
                fields[alias] = kind
        schema[name] = fields
    return schema


def _lua_str(text: str) -> str:
    if any(c in text for c in '"\\\n\r') or not text.isprintable():
        raise ValueError(f"not a plain name: {text!r}")
    return f'"{text}"'


def lua_source(routes: Mapping[str, str], schema: Mapping[str, Mapping[str, str]]) -> str:
    """The Lua filter: `routes` {path: request message}, `schema` from `accepted_fields`."""
    route_rows = "".join(f"  [{_lua_str(p)}] = {_lua_str(m)},\n" for p, m in sorted(routes.items()))
    schema_rows = "".join(
        f"  [{_lua_str(m)}] = {{"
        + ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in sorted(fields.items()))
        + "},\n"
        for m, fields in sorted(schema.items())
    )
    return f"local ROUTES = {{\n{route_rows}}}\nlocal SCHEMA = {{\n{schema_rows}}}\n{_LUA_CHECKER}"


_LUA_CHECKER = r"""
local function ws(s, i) return s:find("[^ \t\r\n]", i) or (#s + 1) end

local ESC = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
local function str(s, i)
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then error("syntax") end
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local e = s:sub(k + 1, k + 1)
    if e == "u" then
      local code = tonumber(s:sub(k + 2, k + 5), 16)
      if not code then error("syntax") end
      out[#out + 1] = code < 128 and string.char(code) or "?"
      j = k + 6
    else
      out[#out + 1] = ESC[e] or e
      j = k + 2
    end
  end
end

local value
local function object(s, i, msg)
  local fields = msg and SCHEMA[msg]
  i = ws(s, i + 1)
  if s:sub(i, i) == "}" then return i + 1 end
  while true do
    if s:sub(i, i) ~= '"' then error("syntax") end
    local key
    key, i = str(s, i)
    local kind = nil
    if fields then
      kind = fields[key]
      if kind == nil then error({field = key, message = msg}, 0) end
    end
    i = ws(s, i)
    if s:sub(i, i) ~= ":" then error("syntax") end
    i = ws(s, value(s, ws(s, i + 1), kind))
    local c = s:sub(i, i)
    if c == "}" then return i + 1 end
    if c ~= "," then error("syntax") end
    i = ws(s, i + 1)
  end
end

local function array(s, i, kind)
  i = ws(s, i + 1)
  if s:sub(i, i) == "]" then return i + 1 end
  while true do
    i = ws(s, value(s, i, kind))
    local c = s:sub(i, i)
    if c == "]" then return i + 1 end
    if c ~= "," then error("syntax") end
    i = ws(s, i + 1)
  end
end

value = function(s, i, kind)
  local c = s:sub(i, i)
  if c == "{" then
    return object(s, i, kind and kind:sub(1, 2) == "m:" and kind:sub(3) or nil)
  elseif c == "[" then
    return array(s, i, kind)
  elseif c == '"' then
    local _, j = str(s, i)
    return j
  end
  local j = s:find("[,%]}%s]", i) or (#s + 1)
  if j == i then error("syntax") end
  return j
end

function envoy_on_request(handle)
  local headers = handle:headers()
  if (headers:get("content-type") or ""):find("^application/grpc") then return end
  local msg = ROUTES[(headers:get(":path") or ""):gsub("%?.*$", "")]
  if msg == nil then return end
  local body = handle:body()
  if body == nil or body:length() == 0 then return end
  local text = body:getBytes(0, body:length())
  local ok, err = pcall(value, text, ws(text, 1), "m:" .. msg)
  if ok or type(err) ~= "table" then return end  -- valid, or not JSON: the transcoder answers that
  local field = err.field:gsub("[^%w_%.%-]", "?"):sub(1, 64)
  -- text: the edge's local reply mapper turns it into {"code": 3, "message": ...} like every error
  handle:respond(
    {[":status"] = "400", ["content-type"] = "text/plain"},
    'unknown field "' .. field .. '" in ' .. err.message
  )
end
"""


def rest_routes(descriptor_set: bytes, http_rules: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """{path: request message} of the body-carrying REST rules (`descriptors.HTTP_RULES`) found in the set."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    out: dict[str, str] = {}
    for file in fds.file:
        for service in file.service:
            for method in service.method:
                rule = http_rules.get(f"{file.package}.{service.name}.{method.name}")
                if rule and rule[0] != "get" and "{" not in rule[1]:
                    out[rule[1]] = method.input_type.lstrip(".")
    return out


def lua_for(descriptor_set: bytes, http_rules: Mapping[str, tuple[str, str]]) -> str:
    """The Lua filter's source for this descriptor set and its REST rules."""
    routes = rest_routes(descriptor_set, http_rules)
    return lua_source(routes, accepted_fields(descriptor_set, sorted(set(routes.values()))))
