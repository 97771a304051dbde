import { useState } from "preact/hooks";
import { ApiError, type SamvadClient } from "../sdk/index.js";

const MESSAGES: Record<string, string> = {
  bad_credentials: "Wrong user name or password.",
  username_taken: "That user name is taken.",
  too_many_attempts: "Too many attempts; wait a little and try again.",
  weak_password: "Choose a longer password (at least 8 characters).",
  invalid_username: "A user name is 1 to 32 letters, digits, dots, dashes or underscores.",
};

export function Auth({ client }: { client: SamvadClient }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mode === "login") await client.login(username.trim(), password);
      else await client.register(username.trim(), password);
    } catch (e) {
      setError(e instanceof ApiError ? (MESSAGES[e.code] ?? e.message) : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="auth">
      <form class="card" onSubmit={submit} aria-labelledby="auth-title">
        <h1 id="auth-title">Samvad</h1>
        <p class="muted">{mode === "login" ? "Log in to your account" : "Create an account"}</p>
        <label>
          User name
          <input name="username" autocomplete="username" required value={username}
            onInput={(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" required minLength={8} value={password}
            autocomplete={mode === "login" ? "current-password" : "new-password"}
            onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error && <p class="error" role="alert">{error}</p>}
        <button type="submit" class="primary" disabled={busy}>
          {mode === "login" ? "Log in" : "Sign up"}
        </button>
        <button type="button" class="link" onClick={() => setMode(mode === "login" ? "register" : "login")}>
          {mode === "login" ? "New here? Create an account" : "Have an account? Log in"}
        </button>
      </form>
    </div>
  );
}
