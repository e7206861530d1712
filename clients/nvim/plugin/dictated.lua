-- dictated.nvim: insert the dictated daemon's transcripts where you are typing.
-- Commands only; nothing runs until :DictatedStart.
if vim.g.loaded_dictated then
  return
end
vim.g.loaded_dictated = true
require("dictated").create_commands()
