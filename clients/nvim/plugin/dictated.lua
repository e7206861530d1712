-- dictated.nvim: insert the dictated daemon's transcripts where you are typing.
-- Commands only; nothing runs until :DictatedStart.
if vim.g.loaded_dictated then
  return
end
vim.g.loaded_dictated = true

vim.api.nvim_create_user_command("DictatedStart", function()
  require("dictated").start()
end, { desc = "Insert dictated transcripts at the cursor of this buffer" })

vim.api.nvim_create_user_command("DictatedStop", function()
  require("dictated").stop()
end, { desc = "Stop inserting dictated transcripts" })

vim.api.nvim_create_user_command("DictatedStatus", function()
  require("dictated").status()
end, { desc = "Show the dictated daemon's state" })
