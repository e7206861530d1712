-- dictated.nvim: the dictated daemon's transcripts, inserted at the cursor of the buffer
-- :DictatedStart was run in. Transcripts come from `dictated-tail --json` run as a job, so
-- the editor never waits on the daemon; the job waits for a daemon that is not running yet and
-- follows it across restarts (no gap, no duplicate). Works with Neovim 0.7 and later.
local compose = require("dictated.compose")

local M = {}

local defaults = {
  -- the subscriber: transcripts and the daemon's state, as JSON lines; waits for the daemon
  cmd = { "dictated-tail", "--json", "--topic", "transcript", "--topic", "status", "--wait" },
  status_cmd = { "dictated", "status" },
  -- spoken commands; set one to false to insert its words instead
  commands = { new_line = true, new_paragraph = true, scratch_that = true },
}

M.config = vim.deepcopy(defaults)

local ns = vim.api.nvim_create_namespace("dictated")
local session -- { job, buf, mark, composer, partial, stopping, stderr, state }

local function notify(msg, level)
  vim.notify("dictated: " .. msg, level or vim.log.levels.INFO)
end

local decode = (vim.json and vim.json.decode) or vim.fn.json_decode

-- :DictatedStart, :DictatedStop, :DictatedStatus (also made by setup(), for plugin managers that
-- put the plugin on 'runtimepath' after plugin/ scripts have run)
function M.create_commands()
  local commands = {
    DictatedStart = { M.start, "Insert dictated transcripts at the cursor of this buffer" },
    DictatedStop = { M.stop, "Stop inserting dictated transcripts" },
    DictatedStatus = { M.status, "Show the dictated daemon's state" },
  }
  for name, spec in pairs(commands) do
    vim.api.nvim_create_user_command(name, function()
      spec[1]()
    end, { desc = spec[2], force = true })
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  if type(M.config.cmd) == "string" then
    M.config.cmd = { M.config.cmd }
  end
  M.create_commands()
end

local function mark_pos(s)
  local pos = vim.api.nvim_buf_get_extmark_by_id(s.buf, ns, s.mark, {})
  return pos[1], pos[2]
end

local function set_mark(s, row, col)
  vim.api.nvim_buf_set_extmark(s.buf, ns, row, col, { id = s.mark })
end

-- windows on the buffer whose cursor sits at the insertion point follow the insertion
local function cursors_at(buf, row, col)
  local wins = {}
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_buf(win) == buf then
      local cur = vim.api.nvim_win_get_cursor(win)
      if cur[1] - 1 == row and cur[2] >= col then
        table.insert(wins, win)
      end
    end
  end
  return wins
end

local function insert(s, text)
  local row, col = mark_pos(s)
  local wins = cursors_at(s.buf, row, col)
  local lines = vim.split(text, "\n", { plain = true })
  vim.api.nvim_buf_set_text(s.buf, row, col, row, col, lines)
  local end_row, end_col = row + #lines - 1, #lines[#lines]
  if #lines == 1 then
    end_col = col + #lines[1]
  end
  set_mark(s, end_row, end_col)
  for _, win in ipairs(wins) do
    pcall(vim.api.nvim_win_set_cursor, win, { end_row + 1, end_col })
  end
end

-- delete `count` characters (a line break is one) before the insertion point
local function backspace(s, count)
  local row, col = mark_pos(s)
  local r, c = row, col
  while count > 0 do
    local line = vim.api.nvim_buf_get_lines(s.buf, r, r + 1, true)[1]
    local before = line:sub(1, c)
    local chars = vim.fn.strchars(before)
    if chars >= count then
      c = vim.fn.byteidxcomp(before, chars - count)
      count = 0
    else
      count = count - chars
      if r == 0 then
        c = 0
        break
      end
      count = count - 1 -- the line break
      r = r - 1
      c = #vim.api.nvim_buf_get_lines(s.buf, r, r + 1, true)[1]
    end
  end
  vim.api.nvim_buf_set_text(s.buf, r, c, row, col, { "" })
  set_mark(s, r, c)
end

-- the daemon's typing state from a status event (issue 18): mode, held, armed, listening;
-- a change of arming or listening is said once, the statusline shows it all
local function on_status(s, event)
  local before = vim.deepcopy(s.state)
  for _, key in ipairs({ "mode", "held", "armed", "listening" }) do
    if event[key] ~= nil and event[key] ~= vim.NIL then
      s.state[key] = event[key]
    end
  end
  if before.armed ~= nil and before.armed ~= s.state.armed then
    notify(s.state.armed and "typing armed" or "typing disarmed (`dictated typing on` arms it)")
  end
  if before.listening ~= nil and before.listening ~= s.state.listening then
    notify(s.state.listening and "listening" or "not listening")
  end
  pcall(vim.cmd, "redrawstatus")
end

-- what dictated-type would type: never a voice command, nothing said while disarmed
local function wanted(event)
  local command = event.command ~= nil and event.command ~= vim.NIL and event.command ~= false
  return not command and event.armed ~= false
end

local function on_event(s, line)
  local ok, event = pcall(decode, line)
  if not ok or type(event) ~= "table" then
    return
  end
  if event.topic == "status" then
    on_status(s, event)
    return
  end
  if event.topic ~= "transcript" then
    return -- not for us: the protocol says ignore what we do not know
  end
  if type(event.text) ~= "string" or event.text:match("^%s*$") or not wanted(event) then
    return
  end
  if not vim.api.nvim_buf_is_valid(s.buf) then
    notify("the buffer dictation was started in is gone; stopping", vim.log.levels.WARN)
    M.stop()
    return
  end
  local language = type(event.language) == "string" and event.language or ""
  for _, action in ipairs(s.composer:feed(event.text, language)) do
    local ok_edit, err = pcall(action.backspace and backspace or insert, s, action.backspace or action.type)
    if not ok_edit then -- e.g. 'nomodifiable'
      notify("could not insert: " .. tostring(err), vim.log.levels.ERROR)
      return
    end
  end
end

-- job output arrives in chunks; a line may be split across them
local function lines_of(s, key, data, each)
  data[1] = s[key] .. data[1]
  s[key] = table.remove(data)
  for _, line in ipairs(data) do
    if line ~= "" then
      each(line)
    end
  end
end

function M.start()
  if session then
    notify("already inserting into buffer " .. session.buf .. " (:DictatedStop first)", vim.log.levels.WARN)
    return
  end
  local cmd = M.config.cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    notify(
      "`" .. cmd[1] .. "` is not on PATH; install dictated (pip install dictated) "
        .. "or point the plugin at it: require('dictated').setup{cmd = {...}}",
      vim.log.levels.ERROR
    )
    return
  end
  local buf = vim.api.nvim_get_current_buf()
  local cur = vim.api.nvim_win_get_cursor(0)
  local s = {
    buf = buf,
    composer = compose.new(M.config.commands),
    partial = "",
    err_partial = "",
    stopping = false,
    stderr = {},
    state = {},
  }
  s.mark = vim.api.nvim_buf_set_extmark(buf, ns, cur[1] - 1, cur[2], {})
  local job = vim.fn.jobstart(cmd, {
    on_stdout = function(_, data)
      lines_of(s, "partial", data, function(line)
        on_event(s, line)
      end)
    end,
    on_stderr = function(_, data)
      lines_of(s, "err_partial", data, function(line)
        table.insert(s.stderr, line)
        -- dictated-tail says when it waits for the daemon, connects, or loses it
        local msg = line:gsub("^dictated%-tail: ", "")
        local level = msg:match("^connected") and vim.log.levels.INFO or vim.log.levels.WARN
        notify(msg, level)
      end)
    end,
    on_exit = function(_, code)
      if session == s then
        session = nil
      end
      pcall(vim.api.nvim_buf_del_extmark, s.buf, ns, s.mark)
      if not s.stopping then
        local last = s.stderr[#s.stderr] or ""
        notify("`" .. cmd[1] .. "` exited with code " .. code .. (last ~= "" and (": " .. last) or ""), vim.log.levels.ERROR)
      end
    end,
  })
  if job <= 0 then
    vim.api.nvim_buf_del_extmark(buf, ns, s.mark)
    notify("could not start `" .. table.concat(cmd, " ") .. "`", vim.log.levels.ERROR)
    return
  end
  s.job = job
  session = s
  notify("inserting transcripts into buffer " .. buf .. " (:DictatedStop to end)")
end

function M.stop()
  if not session then
    notify("not running")
    return
  end
  local s = session
  session = nil
  s.stopping = true
  vim.fn.jobstop(s.job)
  pcall(vim.api.nvim_buf_del_extmark, s.buf, ns, s.mark)
  notify("stopped")
end

-- true while transcripts are being inserted (for statuslines)
function M.running()
  return session ~= nil
end

-- for 'statusline': "" when not inserting, else "dictated", "dictated PTT", "dictated disarmed",
-- "dictated PTT held", "dictated off" (listening turned off), from the daemon's status events
function M.statusline()
  if not session then
    return ""
  end
  local st, parts = session.state, { "dictated" }
  if st.listening == false then
    return "dictated off"
  end
  if st.mode == "push-to-talk" then
    table.insert(parts, "PTT")
  end
  if st.held == true then
    table.insert(parts, "held")
  end
  if st.armed == false then
    table.insert(parts, "disarmed")
  end
  return table.concat(parts, " ")
end

function M.status()
  local cmd = M.config.status_cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    notify("`" .. cmd[1] .. "` is not on PATH; install dictated (pip install dictated)", vim.log.levels.ERROR)
    return
  end
  local out = {}
  local function collect(_, data)
    for _, line in ipairs(data) do
      if line ~= "" then
        table.insert(out, line)
      end
    end
  end
  vim.fn.jobstart(cmd, {
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = collect,
    on_stderr = collect,
    on_exit = function(_, code)
      local here = session and ("inserting into buffer " .. session.buf) or "not inserting"
      local text = table.concat(out, "\n")
      if code ~= 0 then
        notify((text:gsub("^dictated: ", "")) .. " (" .. here .. ")", vim.log.levels.WARN)
      else
        notify(here .. "\n" .. text)
      end
    end,
  })
end

return M
