// A minimal VS Code extension that runs `corral server` through vscode-languageclient.
// Build: npm install && npx @vscode/vsce package; then "Install from VSIX..." in VS Code.
const { workspace } = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function settings() {
  // plain JSON: the server reads the same keys from initializationOptions and from
  // workspace/didChangeConfiguration ({"corral": {...}})
  return { corral: JSON.parse(JSON.stringify(workspace.getConfiguration("corral"))) };
}

exports.activate = async function activate() {
  const command = workspace.getConfiguration("corral").get("path", "corral");
  client = new LanguageClient(
    "corral",
    "corral",
    { command, args: ["server"] },
    {
      documentSelector: [
        { scheme: "file", language: "python" },
        { scheme: "untitled", language: "python" },
      ],
      initializationOptions: settings(),
      synchronize: { configurationSection: "corral" },
    },
  );
  await client.start();
};

exports.deactivate = function deactivate() {
  return client ? client.stop() : undefined;
};
