-- Utterances to edits, with the same rules as dictated-type (clients/keyboard/compose.py):
-- a space between utterances, none before punctuation, none for ja/zh; spoken "new line",
-- "new paragraph" and "scratch that" (which takes back exactly the characters the previous
-- utterance inserted). Pure Lua, no editor calls, so it is checked against the Python rules.
-- A transcript's own control characters are never inserted (dictated.protocol.plain_text).
local M = {}

local NO_SPACE_BEFORE = {
  ".", ",", ";", ":", "!", "?", "%", ")", "]", "}", "…", "”", "’", "»", "、", "。", "，", "．", "！", "？", "：", "；",
}
local NO_SPACE_AFTER = { "(", "[", "{", "“", "‘", "«", "\n", "\t", " " }
local UNSPACED_LANGUAGES = { "ja", "zh" }
local HISTORY = 100

-- name, Lua pattern (on lower-cased text), what it inserts (nil: scratch)
local COMMANDS = {
  { name = "new_paragraph", pattern = "new[ %-]?paragraph", insert = "\n\n" },
  { name = "new_line", pattern = "new[ %-]?line", insert = "\n" },
  { name = "scratch_that", pattern = "scratch[ %-]that", insert = nil },
}

local function starts_with_any(s, list)
  for _, p in ipairs(list) do
    if s:sub(1, #p) == p then
      return true
    end
  end
  return false
end

local function ends_with_any(s, list)
  for _, p in ipairs(list) do
    if #s >= #p and s:sub(-#p) == p then
      return true
    end
  end
  return false
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Bytes of UTF-8 text to drop: C0 controls but the blanks below, DEL, C1 but NEL, U+061C,
-- U+200E/F, U+202A-E, U+2066-9 (ESC drives terminals; bidi controls reorder what text reads)
local DROPPED = {
  "[%z\1-\8\14-\27\127]",
  "\194[\128-\132\134-\159]",
  "\216\156",
  "\226\128[\142\143\170-\174]",
  "\226\129[\166-\169]",
}
-- NEL, U+2028, U+2029: breaks like \n, tab, \v, \f, \r and \28-\31
local MULTIBYTE_BREAKS = { "\194\133", "\226\128[\168\169]" }

-- text as words to insert: controls dropped, a run of blanks holding a break one space
-- (a space: a break parts words; only spoken commands make line breaks)
local function plain(text)
  for _, p in ipairs(DROPPED) do
    text = text:gsub(p, "")
  end
  for _, p in ipairs(MULTIBYTE_BREAKS) do
    text = text:gsub(p, "\n")
  end
  return (text:gsub("[ \9-\13\28-\31]+", function(run)
    if run:find("[^ ]") then
      return " "
    end
  end))
end
M.plain = plain

-- UTF-8 code points in s (what one BackSpace / one character of a buffer is)
local function length(s)
  local _, count = s:gsub("[^\128-\191]", "")
  return count
end
M.length = length

local function is_word_byte(b)
  return b ~= nil and b ~= "" and (b:match("[%w_]") ~= nil or b:byte() >= 128)
end

-- The first enabled command in text at or after init: start, stop (after trailing punctuation), command
local function find_command(lower, init, enabled)
  local best
  for _, cmd in ipairs(COMMANDS) do
    if enabled[cmd.name] then
      local from = init
      while true do
        local s, e = lower:find(cmd.pattern, from)
        if not s then
          break
        end
        if not is_word_byte(lower:sub(s - 1, s - 1)) and not is_word_byte(lower:sub(e + 1, e + 1)) then
          if not best or s < best[1] then
            local _, stop = lower:find("^[.,;:!?]*%s*", e + 1)
            best = { s, stop, cmd }
          end
          break
        end
        from = s + 1
      end
    end
  end
  return best
end

function M.new(commands)
  local enabled = { new_line = true, new_paragraph = true, scratch_that = true }
  for name, on in pairs(commands or {}) do
    enabled[name] = on
  end
  return setmetatable({ typed = {}, enabled = enabled }, { __index = M })
end

function M:before_cursor()
  for i = #self.typed, 1, -1 do
    if self.typed[i] ~= "" then
      return self.typed[i]
    end
  end
  return ""
end

function M:emit(text, actions)
  local last = actions[#actions]
  if last and last.type then
    last.type = last.type .. text
  else
    table.insert(actions, { type = text })
  end
  self.typed[#self.typed] = self.typed[#self.typed] .. text
end

function M:words(words, language, actions)
  words = trim(words)
  if words == "" then
    return
  end
  local tail = self:before_cursor()
  local spaced = tail ~= ""
    and not ends_with_any(tail, NO_SPACE_AFTER)
    and not starts_with_any(words, NO_SPACE_BEFORE)
    and not starts_with_any((language or ""):lower(), UNSPACED_LANGUAGES)
  self:emit(spaced and (" " .. words) or words, actions)
end

-- The actions for one utterance: { {type = "text"} | {backspace = n}, ... }
function M:feed(text, language)
  text = plain(text)
  local actions = {}
  local lower = text:lower() -- ASCII only, so byte positions match text's
  table.insert(self.typed, "")
  local pos = 1
  while true do
    local found = find_command(lower, pos, self.enabled)
    if not found then
      break
    end
    local s, stop, cmd = found[1], found[2], found[3]
    self:words(text:sub(pos, s - 1), language, actions)
    if cmd.insert then
      self:emit(cmd.insert, actions)
    else
      if self.typed[#self.typed] == "" then
        table.remove(self.typed)
      end
      local unit = table.remove(self.typed)
      if unit then
        table.insert(actions, { backspace = length(unit) })
      end
      table.insert(self.typed, "")
    end
    pos = stop + 1
  end
  self:words(text:sub(pos), language, actions)
  if self.typed[#self.typed] == "" then
    table.remove(self.typed)
  end
  while #self.typed > HISTORY do
    table.remove(self.typed, 1)
  end
  return actions
end

return M
