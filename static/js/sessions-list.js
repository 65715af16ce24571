// The sessions page: redrawn from the server when one of the listed sessions changes (static/js/live.js).
import { follow, swapFromServer } from "./live.js";

follow(["sessions"], () => swapFromServer("sessions-live"), { fallbackSeconds: 30 });
